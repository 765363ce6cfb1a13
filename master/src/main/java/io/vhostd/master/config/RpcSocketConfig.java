package io.vhostd.master.config;

/**
 * Who may use the RPC socket: its mode and owning group (keys {@code rpc_socket_mode} and {@code rpc_socket_group}).
 * The server also checks every connection's peer credentials (SO_PEERCRED): root, the master's own user and members
 * of {@code group} are served (see {@code io.vhostd.master.rpc.RpcPeerPolicy}).
 *
 * @param mode permission bits of the socket file, {@value #MODE_0660_TEXT} (default: owner and group) or {@value
 *     #MODE_0600_TEXT} (owner only); key {@code rpc_socket_mode}, a quoted octal string
 * @param group the socket's group, a group name or a numeric gid, or null to keep the master's primary group; key
 *     {@code rpc_socket_group}; must exist when the configuration is loaded
 */
public record RpcSocketConfig(int mode, String group) {
    /** rw-rw----. */
    public static final int MODE_0660 = 0660;

    /** rw-------. */
    public static final int MODE_0600 = 0600;

    static final String MODE_0660_TEXT = "0660";
    static final String MODE_0600_TEXT = "0600";

    public RpcSocketConfig {
        if (mode != MODE_0660 && mode != MODE_0600) {
            throw new IllegalArgumentException("mode must be 0660 or 0600: 0" + Integer.toOctalString(mode));
        }
        if (group != null && group.isEmpty()) {
            throw new IllegalArgumentException("group must not be empty");
        }
    }

    /** Mode 0660, the master's primary group. */
    public static RpcSocketConfig defaults() {
        return new RpcSocketConfig(MODE_0660, null);
    }

    /** The mode as {@code PosixFilePermissions.fromString} takes it, e.g. {@code rw-rw----}. */
    public String permissionsText() {
        return mode == MODE_0660 ? "rw-rw----" : "rw-------";
    }

    /** The mode as the configuration writes it, e.g. {@code 0660}. */
    public String modeText() {
        return "0" + Integer.toOctalString(mode);
    }
}
