package io.vhostd.vhost.proto;

/**
 * Every back-end → front-end message of vhost-user.rst "Back-end message types", sent on the channel that {@code
 * VHOST_USER_SET_BACKEND_REQ_FD} provides. {@link #name()} is the specification's current name; {@link
 * #previousName()} the one from before "slave" became "back-end" (QEMU 7.2 traces print those).
 */
public enum VhostUserBackendRequest {
    VHOST_USER_BACKEND_IOTLB_MSG(1, VhostUserPayloadKind.IOTLB, "VHOST_USER_SLAVE_IOTLB_MSG"),
    VHOST_USER_BACKEND_CONFIG_CHANGE_MSG(2, VhostUserPayloadKind.NONE, "VHOST_USER_SLAVE_CONFIG_CHANGE_MSG"),
    /** With an fd in the ancillary data, or with {@code VHOST_USER_VRING_NOFD_MASK} set in the area's u64. */
    VHOST_USER_BACKEND_VRING_HOST_NOTIFIER_MSG(
            3, VhostUserPayloadKind.VRING_AREA, "VHOST_USER_SLAVE_VRING_HOST_NOTIFIER_MSG"),
    VHOST_USER_BACKEND_VRING_CALL(4, VhostUserPayloadKind.VRING_STATE, "VHOST_USER_SLAVE_VRING_CALL"),
    VHOST_USER_BACKEND_VRING_ERR(5, VhostUserPayloadKind.VRING_STATE, "VHOST_USER_SLAVE_VRING_ERR"),
    VHOST_USER_BACKEND_SHARED_OBJECT_ADD(6, VhostUserPayloadKind.SHARED, null),
    VHOST_USER_BACKEND_SHARED_OBJECT_REMOVE(7, VhostUserPayloadKind.SHARED, null),
    VHOST_USER_BACKEND_SHARED_OBJECT_LOOKUP(8, VhostUserPayloadKind.SHARED, null);

    /** The largest back-end request id the specification defines. */
    public static final int MAX_ID = 8;

    private static final VhostUserBackendRequest[] BY_ID = new VhostUserBackendRequest[MAX_ID + 1];

    static {
        for (VhostUserBackendRequest r : values()) {
            BY_ID[r.id] = r;
        }
    }

    private final int id;
    private final VhostUserPayloadKind payload;
    private final String previousName;

    VhostUserBackendRequest(int id, VhostUserPayloadKind payload, String previousName) {
        this.id = id;
        this.payload = payload;
        this.previousName = previousName;
    }

    /** The request, or {@code null} for an id the specification does not define. */
    public static VhostUserBackendRequest fromId(int id) {
        return id > 0 && id <= MAX_ID ? BY_ID[id] : null;
    }

    /** The {@code request} field of the header. */
    public int id() {
        return id;
    }

    /** The request payload's shape. */
    public VhostUserPayloadKind payload() {
        return payload;
    }

    /** The name before the "slave" → "back-end" rename, or {@code null} for messages added after it. */
    public String previousName() {
        return previousName;
    }
}
