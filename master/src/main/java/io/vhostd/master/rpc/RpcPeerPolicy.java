package io.vhostd.master.rpc;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.UserPrincipal;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import jdk.net.UnixDomainPrincipal;

/**
 * Who may talk to the RPC socket, decided from the peer's credentials as the kernel reports them at connect time
 * ({@code SO_PEERCRED}: the peer's uid and primary gid, which the JDK gives as a {@link UnixDomainPrincipal}).
 *
 * <p>Allowed: uid 0; the socket file's owner (the master's effective uid, which created it); a peer whose primary gid
 * is the socket's group; a peer whose user name {@code /etc/group} lists as a member of the socket's group. Everyone
 * else is refused. Principals compare by number (the JDK's Unix principals are equal when their ids are), names only
 * for the {@code /etc/group} member list.
 *
 * <p>Known limit: {@code SO_PEERCRED} carries no supplementary groups, so a process that is in the group only through
 * {@code setgroups} (or an NSS source other than {@code /etc/group}, e.g. LDAP) but not as its primary group and not
 * listed in {@code /etc/group} is refused even though the file mode let it connect. ({@code SO_PEERGROUPS} would tell,
 * but the JDK does not expose it.)
 *
 * @param root the principal of uid 0
 * @param owner the socket's owner
 * @param group the socket's group
 * @param groupMembers user names {@code /etc/group} lists for {@code group}
 */
public record RpcPeerPolicy(UserPrincipal root, UserPrincipal owner, GroupPrincipal group, Set<String> groupMembers) {
    /** Where group members are read from. */
    public static final Path ETC_GROUP = Path.of("/etc/group");

    public RpcPeerPolicy {
        Objects.requireNonNull(root, "root");
        Objects.requireNonNull(owner, "owner");
        Objects.requireNonNull(group, "group");
        groupMembers = Set.copyOf(groupMembers);
    }

    /**
     * The answer for one peer.
     *
     * @param allowed whether it is served
     * @param reason why, for the log: which rule let it in, or that none did
     */
    public record Decision(boolean allowed, String reason) {}

    /** Decides for {@code peer} (null when its credentials could not be read: refused). */
    public Decision check(UnixDomainPrincipal peer) {
        if (peer == null) {
            return new Decision(false, "peer credentials unavailable");
        }
        UserPrincipal user = peer.user();
        if (user.equals(root)) {
            return new Decision(true, "uid 0");
        }
        if (user.equals(owner)) {
            return new Decision(true, "the master's user");
        }
        if (peer.group().equals(group)) {
            return new Decision(true, "primary group " + group.getName());
        }
        if (groupMembers.contains(user.getName())) {
            return new Decision(true, "member of " + group.getName() + " in " + ETC_GROUP);
        }
        return new Decision(
                false,
                "user " + user.getName() + " (group " + peer.group().getName() + ") is not root, not the master's user"
                        + " and not in group " + group.getName());
    }

    /**
     * The policy of the socket at {@code socket}: its owner and group as the file says now, the group's members from
     * {@code etcGroup} (missing file: no members).
     */
    public static RpcPeerPolicy forSocket(Path socket, Path etcGroup) throws IOException {
        PosixFileAttributes attributes =
                Files.readAttributes(socket, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        int gid = (Integer) Files.getAttribute(socket, "unix:gid", LinkOption.NOFOLLOW_LINKS);
        List<String> lines;
        try {
            lines = Files.readAllLines(etcGroup, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            lines = List.of();
        }
        UserPrincipal root =
                socket.getFileSystem().getUserPrincipalLookupService().lookupPrincipalByName("0");
        return new RpcPeerPolicy(root, attributes.owner(), attributes.group(), groupMembers(lines, gid));
    }

    /**
     * The members of the group with {@code gid} in {@code /etc/group} lines ({@code name:password:gid:user,user}); lines
     * that do not parse are skipped; several lines with the gid are merged.
     */
    static Set<String> groupMembers(List<String> etcGroupLines, int gid) {
        java.util.Set<String> members = new java.util.TreeSet<>();
        for (String line : etcGroupLines) {
            String[] fields = line.split(":", -1);
            if (fields.length != 4 || !fields[2].equals(Integer.toString(gid))) {
                continue;
            }
            for (String member : fields[3].split(",")) {
                if (!member.isBlank()) {
                    members.add(member.strip());
                }
            }
        }
        return members;
    }
}
