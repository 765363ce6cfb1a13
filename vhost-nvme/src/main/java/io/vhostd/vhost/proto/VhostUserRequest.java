package io.vhostd.vhost.proto;

import static io.vhostd.vhost.proto.VhostUserProtocolFeature.NO_FEATURE;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_BACKEND_REQ_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIG_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CROSS_ENDIAN_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CRYPTO_SESSION_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_DEVICE_STATE_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_LOG_SHMFD_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_MQ_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_MTU_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_PAGEFAULT_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_RARP_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_RESET_DEVICE_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_SHARED_OBJECT_BIT;
import static io.vhostd.vhost.proto.VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_STATUS_BIT;

/**
 * Every front-end → back-end message of vhost-user.rst "Front-end message types", with its id and, as data, what the
 * specification says about it: the request payload, whether and how the back-end replies, which file descriptors
 * travel in the ancillary data, whether it needs {@code VHOST_USER_SET_OWNER} first, and the protocol feature that
 * makes it legal. {@link #name()} is the specification's name, spelled exactly.
 *
 * <p>The table is checked against the specification's lists by a test ({@code VhostUserRequestTest}).
 */
public enum VhostUserRequest {
    VHOST_USER_GET_FEATURES(1, VhostUserPayloadKind.NONE, Reply.VALUE_U64, Fds.NONE, false, NO_FEATURE),
    VHOST_USER_SET_FEATURES(2, VhostUserPayloadKind.U64, Reply.NONE, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_SET_OWNER(3, VhostUserPayloadKind.NONE, Reply.NONE, Fds.NONE, false, NO_FEATURE),
    /** Deprecated by the specification: back-ends ignore it or disable all rings. */
    VHOST_USER_RESET_OWNER(4, VhostUserPayloadKind.NONE, Reply.NONE, Fds.NONE, true, NO_FEATURE),
    /** One fd per region. Replies only in postcopy mode, which this back-end does not offer. */
    VHOST_USER_SET_MEM_TABLE(5, VhostUserPayloadKind.MEMORY, Reply.NONE, Fds.PER_REGION, true, NO_FEATURE),
    /**
     * The specification's per-message entry says "u64"; the payload is the "Log description" (QEMU sends {@code
     * VhostUserLog}). Fd and reply only with {@code VHOST_USER_PROTOCOL_F_LOG_SHMFD}.
     */
    VHOST_USER_SET_LOG_BASE(
            6,
            VhostUserPayloadKind.LOG,
            Reply.ACK_U64,
            VHOST_USER_PROTOCOL_F_LOG_SHMFD_BIT,
            Fds.ONE,
            VHOST_USER_PROTOCOL_F_LOG_SHMFD_BIT,
            true,
            NO_FEATURE,
            null),
    VHOST_USER_SET_LOG_FD(7, VhostUserPayloadKind.NONE, Reply.NONE, Fds.ONE, true, NO_FEATURE),
    VHOST_USER_SET_VRING_NUM(8, VhostUserPayloadKind.VRING_STATE, Reply.NONE, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_SET_VRING_ADDR(9, VhostUserPayloadKind.VRING_ADDR, Reply.NONE, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_SET_VRING_BASE(10, VhostUserPayloadKind.VRING_STATE, Reply.NONE, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_GET_VRING_BASE(11, VhostUserPayloadKind.VRING_STATE, Reply.VRING_STATE, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_SET_VRING_KICK(12, VhostUserPayloadKind.VRING_FD, Reply.NONE, Fds.ONE_UNLESS_NOFD, true, NO_FEATURE),
    VHOST_USER_SET_VRING_CALL(13, VhostUserPayloadKind.VRING_FD, Reply.NONE, Fds.ONE_UNLESS_NOFD, true, NO_FEATURE),
    VHOST_USER_SET_VRING_ERR(14, VhostUserPayloadKind.VRING_FD, Reply.NONE, Fds.ONE_UNLESS_NOFD, true, NO_FEATURE),
    VHOST_USER_GET_PROTOCOL_FEATURES(15, VhostUserPayloadKind.NONE, Reply.VALUE_U64, Fds.NONE, false, NO_FEATURE),
    VHOST_USER_SET_PROTOCOL_FEATURES(16, VhostUserPayloadKind.U64, Reply.NONE, Fds.NONE, false, NO_FEATURE),
    VHOST_USER_GET_QUEUE_NUM(
            17, VhostUserPayloadKind.NONE, Reply.VALUE_U64, Fds.NONE, false, VHOST_USER_PROTOCOL_F_MQ_BIT),
    VHOST_USER_SET_VRING_ENABLE(18, VhostUserPayloadKind.VRING_STATE, Reply.NONE, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_SEND_RARP(19, VhostUserPayloadKind.U64, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_RARP_BIT),
    VHOST_USER_NET_SET_MTU(20, VhostUserPayloadKind.U64, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_MTU_BIT),
    /** Sent before {@code VHOST_USER_SET_OWNER} by QEMU 7.2. */
    VHOST_USER_SET_BACKEND_REQ_FD(
            21,
            VhostUserPayloadKind.NONE,
            Reply.NONE,
            NO_FEATURE,
            Fds.ONE,
            NO_FEATURE,
            false,
            VHOST_USER_PROTOCOL_F_BACKEND_REQ_BIT,
            "VHOST_USER_SET_SLAVE_REQ_FD"),
    /** Legal with {@code VIRTIO_F_IOMMU_PLATFORM} negotiated, a virtio feature the dispatcher checks. */
    VHOST_USER_IOTLB_MSG(22, VhostUserPayloadKind.IOTLB, Reply.ACK_U64, Fds.NONE, true, NO_FEATURE),
    VHOST_USER_SET_VRING_ENDIAN(
            23, VhostUserPayloadKind.VRING_STATE, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_CROSS_ENDIAN_BIT),
    /** Sent without {@code VHOST_USER_SET_OWNER} by probes that only read the config space. */
    VHOST_USER_GET_CONFIG(
            24, VhostUserPayloadKind.CONFIG, Reply.CONFIG, Fds.NONE, false, VHOST_USER_PROTOCOL_F_CONFIG_BIT),
    VHOST_USER_SET_CONFIG(
            25, VhostUserPayloadKind.CONFIG, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_CONFIG_BIT),
    VHOST_USER_CREATE_CRYPTO_SESSION(
            26,
            VhostUserPayloadKind.CRYPTO_SESSION,
            Reply.CRYPTO_SESSION,
            Fds.NONE,
            true,
            VHOST_USER_PROTOCOL_F_CRYPTO_SESSION_BIT),
    VHOST_USER_CLOSE_CRYPTO_SESSION(
            27, VhostUserPayloadKind.U64, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_CRYPTO_SESSION_BIT),
    /** Reply: a userfault fd in the ancillary data, no body. */
    VHOST_USER_POSTCOPY_ADVISE(
            28, VhostUserPayloadKind.NONE, Reply.FD, Fds.NONE, true, VHOST_USER_PROTOCOL_F_PAGEFAULT_BIT),
    VHOST_USER_POSTCOPY_LISTEN(
            29, VhostUserPayloadKind.NONE, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_PAGEFAULT_BIT),
    VHOST_USER_POSTCOPY_END(
            30, VhostUserPayloadKind.NONE, Reply.ACK_U64, Fds.NONE, true, VHOST_USER_PROTOCOL_F_PAGEFAULT_BIT),
    /**
     * The specification's per-message entry says reply "N/A"; its "Communication" list and QEMU expect an inflight
     * description (and the region's fd).
     */
    VHOST_USER_GET_INFLIGHT_FD(
            31,
            VhostUserPayloadKind.INFLIGHT,
            Reply.INFLIGHT,
            VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT,
            Fds.NONE,
            NO_FEATURE,
            true,
            VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT,
            null),
    VHOST_USER_SET_INFLIGHT_FD(
            32,
            VhostUserPayloadKind.INFLIGHT,
            Reply.NONE,
            NO_FEATURE,
            Fds.ONE,
            VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT,
            true,
            VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_BIT,
            null),
    /**
     * vhost-user-gpu only. Its entry says the fd is "passed as ancillary data", though the specification's list of
     * fd-carrying messages omits it.
     */
    VHOST_USER_GPU_SET_SOCKET(33, VhostUserPayloadKind.NONE, Reply.NONE, Fds.ONE, true, NO_FEATURE),
    VHOST_USER_RESET_DEVICE(
            34, VhostUserPayloadKind.NONE, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_RESET_DEVICE_BIT),
    VHOST_USER_VRING_KICK(
            35,
            VhostUserPayloadKind.VRING_STATE,
            Reply.NONE,
            Fds.NONE,
            true,
            VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS_BIT),
    VHOST_USER_GET_MAX_MEM_SLOTS(
            36,
            VhostUserPayloadKind.NONE,
            Reply.VALUE_U64,
            Fds.NONE,
            false,
            VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_BIT),
    /** Exactly one fd. Replies only in postcopy mode, which this back-end does not offer. */
    VHOST_USER_ADD_MEM_REG(
            37, VhostUserPayloadKind.MEM_REG, Reply.NONE, Fds.ONE, true, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_BIT),
    /**
     * "No file descriptors SHOULD be passed ... the back-end MAY accept messages with one file descriptor ... MUST
     * close it". The specification's reply entry ("single memory region description") applies to postcopy only.
     */
    VHOST_USER_REM_MEM_REG(
            38,
            VhostUserPayloadKind.MEM_REG,
            Reply.NONE,
            Fds.TOLERATED_ONE,
            true,
            VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_BIT),
    VHOST_USER_SET_STATUS(39, VhostUserPayloadKind.U64, Reply.NONE, Fds.NONE, true, VHOST_USER_PROTOCOL_F_STATUS_BIT),
    VHOST_USER_GET_STATUS(
            40, VhostUserPayloadKind.NONE, Reply.VALUE_U64, Fds.NONE, true, VHOST_USER_PROTOCOL_F_STATUS_BIT),
    /** Reply: a dma-buf fd in the ancillary data, or none. */
    VHOST_USER_GET_SHARED_OBJECT(
            41, VhostUserPayloadKind.SHARED, Reply.FD, Fds.NONE, true, VHOST_USER_PROTOCOL_F_SHARED_OBJECT_BIT),
    VHOST_USER_SET_DEVICE_STATE_FD(
            42,
            VhostUserPayloadKind.DEVICE_STATE,
            Reply.DEVICE_STATE_U64,
            Fds.ONE,
            true,
            VHOST_USER_PROTOCOL_F_DEVICE_STATE_BIT),
    VHOST_USER_CHECK_DEVICE_STATE(
            43, VhostUserPayloadKind.NONE, Reply.ACK_U64, Fds.NONE, true, VHOST_USER_PROTOCOL_F_DEVICE_STATE_BIT);

    /** The largest request id the specification defines. */
    public static final int MAX_ID = 43;

    private static final VhostUserRequest[] BY_ID = new VhostUserRequest[MAX_ID + 1];

    static {
        for (VhostUserRequest r : values()) {
            if (BY_ID[r.id] != null) {
                throw new ExceptionInInitializerError("duplicate vhost-user request id " + r.id);
            }
            BY_ID[r.id] = r;
        }
    }

    /** What the back-end sends back, besides the {@code REPLY_ACK} acknowledgement. */
    public enum Reply {
        /** No reply of its own (a {@code NEED_REPLY} request gets a {@code u64} acknowledgement). */
        NONE,
        /** A {@code u64} status: 0 success, non-zero failure. */
        ACK_U64,
        /** A {@code u64} value ({@code GET_*}); a failure is answered with an empty payload. */
        VALUE_U64,
        /** A vring state description ({@code GET_VRING_BASE}); a failure is answered with an empty payload. */
        VRING_STATE,
        /** The config space window; a failure is answered with an empty payload, as the specification says. */
        CONFIG,
        /** An inflight description and the region's fd; a failure is answered with an empty payload. */
        INFLIGHT,
        /** Only an fd in the ancillary data (none on failure). */
        FD,
        /** A crypto session description. */
        CRYPTO_SESSION,
        /** A {@code u64}: bits 0-7 status, bit 8 "no fd returned", and optionally an fd. */
        DEVICE_STATE_U64
    }

    /** Which file descriptors travel with the request. */
    public enum Fds {
        /** None; any that arrive are closed and the request fails. */
        NONE(0),
        /** Exactly one. */
        ONE(1),
        /** One, unless the payload's bit 8 ({@code VHOST_USER_VRING_NOFD_MASK}) says there is none. */
        ONE_UNLESS_NOFD(1),
        /** One per memory region, in region order: at most {@link VhostUserMemory#VHOST_MEMORY_BASELINE_NREGIONS}. */
        PER_REGION(VhostUserMemory.VHOST_MEMORY_BASELINE_NREGIONS),
        /** None should be sent, but one is accepted and closed unused. */
        TOLERATED_ONE(1);

        private final int maxFds;

        Fds(int maxFds) {
            this.maxFds = maxFds;
        }

        /** The most fds this rule accepts. */
        public int maxFds() {
            return maxFds;
        }
    }

    private final int id;
    private final VhostUserPayloadKind payload;
    private final Reply reply;
    private final int replyFeatureBit;
    private final Fds fds;
    private final int fdFeatureBit;
    private final boolean needsOwner;
    private final int requiredFeatureBit;
    private final String previousName;

    VhostUserRequest(
            int id, VhostUserPayloadKind payload, Reply reply, Fds fds, boolean needsOwner, int requiredFeatureBit) {
        this(id, payload, reply, NO_FEATURE, fds, NO_FEATURE, needsOwner, requiredFeatureBit, null);
    }

    VhostUserRequest(
            int id,
            VhostUserPayloadKind payload,
            Reply reply,
            int replyFeatureBit,
            Fds fds,
            int fdFeatureBit,
            boolean needsOwner,
            int requiredFeatureBit,
            String previousName) {
        this.id = id;
        this.payload = payload;
        this.reply = reply;
        this.replyFeatureBit = replyFeatureBit;
        this.fds = fds;
        this.fdFeatureBit = fdFeatureBit;
        this.needsOwner = needsOwner;
        this.requiredFeatureBit = requiredFeatureBit;
        this.previousName = previousName;
    }

    /** The request, or {@code null} for an id the specification does not define (including 0, VHOST_USER_NONE). */
    public static VhostUserRequest fromId(int id) {
        return id > 0 && id <= MAX_ID ? BY_ID[id] : null;
    }

    /** A printable name for any id: the specification's name, or {@code "unknown request <id>"}. */
    public static String nameOf(int id) {
        VhostUserRequest r = fromId(id);
        return r != null ? r.name() : "unknown request " + Integer.toUnsignedString(id);
    }

    /** The {@code request} field of the header. */
    public int id() {
        return id;
    }

    /** The request payload's shape. */
    public VhostUserPayloadKind payload() {
        return payload;
    }

    /** The reply the back-end sends (when {@link #repliesWith(long)} says so). */
    public Reply reply() {
        return reply;
    }

    /**
     * The protocol feature that must be negotiated for the reply to be sent, or {@link VhostUserProtocolFeature#NO_FEATURE}: {@code
     * VHOST_USER_SET_LOG_BASE} replies only with {@code LOG_SHMFD}, {@code VHOST_USER_GET_INFLIGHT_FD} only with
     * {@code INFLIGHT_SHMFD} ("Communication").
     */
    public int replyFeatureBit() {
        return replyFeatureBit;
    }

    /**
     * Does the back-end send a reply of its own (not counting the {@code REPLY_ACK} acknowledgement)?
     *
     * @param negotiatedProtocolFeatures the protocol features in force on the connection
     */
    public boolean repliesWith(long negotiatedProtocolFeatures) {
        return reply != Reply.NONE
                && (replyFeatureBit == NO_FEATURE || (negotiatedProtocolFeatures & (1L << replyFeatureBit)) != 0);
    }

    /** The fd rule. */
    public Fds fds() {
        return fds;
    }

    /**
     * The protocol feature without which the request carries no fd, or {@link VhostUserProtocolFeature#NO_FEATURE}: {@code
     * VHOST_USER_SET_LOG_BASE} (LOG_SHMFD), {@code VHOST_USER_SET_INFLIGHT_FD} (INFLIGHT_SHMFD).
     */
    public int fdFeatureBit() {
        return fdFeatureBit;
    }

    /**
     * The fd rule in force: {@link #fds()}, or {@link Fds#NONE} when {@link #fdFeatureBit()} is not negotiated.
     *
     * @param negotiatedProtocolFeatures the protocol features in force on the connection
     */
    public Fds fdsWith(long negotiatedProtocolFeatures) {
        return fdFeatureBit == NO_FEATURE || (negotiatedProtocolFeatures & (1L << fdFeatureBit)) != 0 ? fds : Fds.NONE;
    }

    /** Is the request listed by the specification as carrying fds ("Communication")? */
    public boolean carriesFds() {
        return fds != Fds.NONE && fds != Fds.TOLERATED_ONE;
    }

    /** Must {@code VHOST_USER_SET_OWNER} come first? (QEMU sends the feature queries before it.) */
    public boolean needsOwner() {
        return needsOwner;
    }

    /** The protocol feature that must be negotiated for the request to be legal, or {@link VhostUserProtocolFeature#NO_FEATURE}. */
    public int requiredFeatureBit() {
        return requiredFeatureBit;
    }

    /** The name before the specification renamed "slave" to "back-end", or {@code null}. */
    public String previousName() {
        return previousName;
    }
}
