package io.vhostd.master.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.UserPrincipal;
import java.nio.file.attribute.UserPrincipalLookupService;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import jdk.net.UnixDomainPrincipal;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** The SO_PEERCRED decision, table-driven over numeric principals (no native calls, no other users needed). */
@Timeout(10)
class RpcPeerPolicyTest {
    private static final UserPrincipalLookupService LOOKUP =
            FileSystems.getDefault().getUserPrincipalLookupService();

    @TempDir
    Path dir;

    private static UserPrincipal user(int uid) throws Exception {
        return LOOKUP.lookupPrincipalByName(Integer.toString(uid));
    }

    private static GroupPrincipal group(int gid) throws Exception {
        return LOOKUP.lookupPrincipalByGroupName(Integer.toString(gid));
    }

    /** The master runs as uid 1000, the socket's group is gid 4242 whose /etc/group members are alice and 12345. */
    private static RpcPeerPolicy policy() throws Exception {
        return new RpcPeerPolicy(user(0), user(1000), group(4242), Set.of("alice", "12345"));
    }

    static Stream<Arguments> peers() {
        return Stream.of(
                Arguments.of("root", 0, 0, true, "uid 0"),
                Arguments.of("root with another group", 0, 777, true, "uid 0"),
                Arguments.of("the master's user", 1000, 1000, true, "the master's user"),
                Arguments.of("primary group is the socket's", 2000, 4242, true, "primary group"),
                Arguments.of("listed in /etc/group", 12345, 9999, true, "member of"),
                Arguments.of("a stranger", 2000, 2000, false, "not in group"),
                Arguments.of("nobody", 65534, 65534, false, "not in group"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("peers")
    void shouldDecideByUidPrimaryGidAndMembersWhenPeerConnects(
            String what, int uid, int gid, boolean allowed, String reason) throws Exception {
        RpcPeerPolicy.Decision d = policy().check(new UnixDomainPrincipal(user(uid), group(gid)));

        assertEquals(allowed, d.allowed(), d.reason());
        assertTrue(d.reason().contains(reason), d.reason());
    }

    @Test
    void shouldRefuseWhenCredentialsAreUnavailable() throws Exception {
        RpcPeerPolicy.Decision d = policy().check(null);

        assertFalse(d.allowed());
        assertEquals("peer credentials unavailable", d.reason());
    }

    @Test
    void shouldReadMembersOfTheGidWhenEtcGroupHasThem() {
        List<String> lines = List.of(
                "root:x:0:",
                "vhostd:x:4242:alice,bob",
                "broken line",
                "other:x:42420:carol",
                "vhostd-again:x:4242: dave ",
                "kvm:x:4243:");

        assertEquals(Set.of("alice", "bob", "dave"), RpcPeerPolicy.groupMembers(lines, 4242));
        assertEquals(Set.of(), RpcPeerPolicy.groupMembers(lines, 4243));
        assertEquals(Set.of(), RpcPeerPolicy.groupMembers(lines, 7));
    }

    @Test
    void shouldTakeOwnerAndGroupFromTheFileWhenBuiltForASocket() throws Exception {
        Path file = Files.createFile(dir.resolve("rpc.sock"));
        Path etcGroup =
                Files.writeString(dir.resolve("group"), "x:x:" + Files.getAttribute(file, "unix:gid") + ":zed\n");

        RpcPeerPolicy p = RpcPeerPolicy.forSocket(file, etcGroup);

        assertEquals(Files.getOwner(file), p.owner());
        assertEquals(Set.of("zed"), p.groupMembers());
        assertEquals(user(0), p.root());
        assertEquals(
                Set.of(), RpcPeerPolicy.forSocket(file, dir.resolve("missing")).groupMembers());
    }
}
