package io.vhostd.vhost.proto;

import java.util.StringJoiner;

/**
 * vhost-user protocol feature bits ({@code VHOST_USER_GET_PROTOCOL_FEATURES} / {@code
 * VHOST_USER_SET_PROTOCOL_FEATURES}), vhost-user.rst "Protocol features". Bit numbers are {@code *_BIT}, masks
 * {@code *_MASK}.
 */
public final class VhostUserProtocolFeature {
    /** "No protocol feature", where a table column names a feature bit. */
    public static final int NO_FEATURE = -1;

    public static final int VHOST_USER_PROTOCOL_F_MQ_BIT = 0;
    public static final int VHOST_USER_PROTOCOL_F_LOG_SHMFD_BIT = 1;
    public static final int VHOST_USER_PROTOCOL_F_RARP_BIT = 2;
    public static final int VHOST_USER_PROTOCOL_F_REPLY_ACK_BIT = 3;
    /**
     * The specification's {@code #define} list spells it {@code VHOST_USER_PROTOCOL_F_MTU}; QEMU's source and the
     * {@code VHOST_USER_NET_SET_MTU} text call it {@code VHOST_USER_PROTOCOL_F_NET_MTU}.
     */
    public static final int VHOST_USER_PROTOCOL_F_MTU_BIT = 4;

    public static final int VHOST_USER_PROTOCOL_F_BACKEND_REQ_BIT = 5;
    public static final int VHOST_USER_PROTOCOL_F_CROSS_ENDIAN_BIT = 6;
    public static final int VHOST_USER_PROTOCOL_F_CRYPTO_SESSION_BIT = 7;
    public static final int VHOST_USER_PROTOCOL_F_PAGEFAULT_BIT = 8;
    public static final int VHOST_USER_PROTOCOL_F_CONFIG_BIT = 9;
    public static final int VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD_BIT = 10;
    public static final int VHOST_USER_PROTOCOL_F_HOST_NOTIFIER_BIT = 11;
    public static final int VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT = 12;
    public static final int VHOST_USER_PROTOCOL_F_RESET_DEVICE_BIT = 13;
    public static final int VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS_BIT = 14;
    public static final int VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_BIT = 15;
    public static final int VHOST_USER_PROTOCOL_F_STATUS_BIT = 16;
    public static final int VHOST_USER_PROTOCOL_F_XEN_MMAP_BIT = 17;
    public static final int VHOST_USER_PROTOCOL_F_SHARED_OBJECT_BIT = 18;
    public static final int VHOST_USER_PROTOCOL_F_DEVICE_STATE_BIT = 19;

    public static final long VHOST_USER_PROTOCOL_F_MQ_MASK = 1L << VHOST_USER_PROTOCOL_F_MQ_BIT;
    public static final long VHOST_USER_PROTOCOL_F_LOG_SHMFD_MASK = 1L << VHOST_USER_PROTOCOL_F_LOG_SHMFD_BIT;
    public static final long VHOST_USER_PROTOCOL_F_RARP_MASK = 1L << VHOST_USER_PROTOCOL_F_RARP_BIT;
    public static final long VHOST_USER_PROTOCOL_F_REPLY_ACK_MASK = 1L << VHOST_USER_PROTOCOL_F_REPLY_ACK_BIT;
    public static final long VHOST_USER_PROTOCOL_F_MTU_MASK = 1L << VHOST_USER_PROTOCOL_F_MTU_BIT;
    public static final long VHOST_USER_PROTOCOL_F_BACKEND_REQ_MASK = 1L << VHOST_USER_PROTOCOL_F_BACKEND_REQ_BIT;
    public static final long VHOST_USER_PROTOCOL_F_CROSS_ENDIAN_MASK = 1L << VHOST_USER_PROTOCOL_F_CROSS_ENDIAN_BIT;
    public static final long VHOST_USER_PROTOCOL_F_CRYPTO_SESSION_MASK = 1L << VHOST_USER_PROTOCOL_F_CRYPTO_SESSION_BIT;
    public static final long VHOST_USER_PROTOCOL_F_PAGEFAULT_MASK = 1L << VHOST_USER_PROTOCOL_F_PAGEFAULT_BIT;
    public static final long VHOST_USER_PROTOCOL_F_CONFIG_MASK = 1L << VHOST_USER_PROTOCOL_F_CONFIG_BIT;
    public static final long VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD_MASK =
            1L << VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD_BIT;
    public static final long VHOST_USER_PROTOCOL_F_HOST_NOTIFIER_MASK = 1L << VHOST_USER_PROTOCOL_F_HOST_NOTIFIER_BIT;
    public static final long VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_MASK = 1L << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT;
    public static final long VHOST_USER_PROTOCOL_F_RESET_DEVICE_MASK = 1L << VHOST_USER_PROTOCOL_F_RESET_DEVICE_BIT;
    public static final long VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS_MASK =
            1L << VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS_BIT;
    public static final long VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_MASK =
            1L << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_BIT;
    public static final long VHOST_USER_PROTOCOL_F_STATUS_MASK = 1L << VHOST_USER_PROTOCOL_F_STATUS_BIT;
    public static final long VHOST_USER_PROTOCOL_F_XEN_MMAP_MASK = 1L << VHOST_USER_PROTOCOL_F_XEN_MMAP_BIT;
    public static final long VHOST_USER_PROTOCOL_F_SHARED_OBJECT_MASK = 1L << VHOST_USER_PROTOCOL_F_SHARED_OBJECT_BIT;
    public static final long VHOST_USER_PROTOCOL_F_DEVICE_STATE_MASK = 1L << VHOST_USER_PROTOCOL_F_DEVICE_STATE_BIT;

    /** Names without the {@code VHOST_USER_PROTOCOL_F_} prefix, indexed by bit number. */
    private static final String[] NAMES = {
        "MQ",
        "LOG_SHMFD",
        "RARP",
        "REPLY_ACK",
        "MTU",
        "BACKEND_REQ",
        "CROSS_ENDIAN",
        "CRYPTO_SESSION",
        "PAGEFAULT",
        "CONFIG",
        "BACKEND_SEND_FD",
        "HOST_NOTIFIER",
        "INFLIGHT_SHMFD",
        "RESET_DEVICE",
        "INBAND_NOTIFICATIONS",
        "CONFIGURE_MEM_SLOTS",
        "STATUS",
        "XEN_MMAP",
        "SHARED_OBJECT",
        "DEVICE_STATE",
    };

    /** Number of protocol feature bits the specification defines (bits 0 .. {@code BIT_COUNT - 1}). */
    public static final int BIT_COUNT = NAMES.length;

    private VhostUserProtocolFeature() {}

    /**
     * The specification's name of a protocol feature bit, e.g. {@code "VHOST_USER_PROTOCOL_F_MQ"}, or {@code
     * "bit<N>"} for a bit it does not define.
     */
    public static String name(int bit) {
        return bit >= 0 && bit < NAMES.length ? "VHOST_USER_PROTOCOL_F_" + NAMES[bit] : "bit" + bit;
    }

    /** A mask for logs: {@code "0x8f2b[MQ,LOG_SHMFD,...]"} (short names, unknown bits as {@code bitN}). */
    public static String describe(long mask) {
        StringJoiner names = new StringJoiner(",", "0x" + Long.toHexString(mask) + "[", "]");
        for (int bit = 0; bit < Long.SIZE; bit++) {
            if ((mask & (1L << bit)) != 0) {
                names.add(bit < NAMES.length ? NAMES[bit] : "bit" + bit);
            }
        }
        return names.toString();
    }
}
