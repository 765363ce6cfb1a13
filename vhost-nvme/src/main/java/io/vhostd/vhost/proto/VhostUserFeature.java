package io.vhostd.vhost.proto;

/**
 * The virtio feature bits ({@code VHOST_USER_GET_FEATURES} / {@code VHOST_USER_SET_FEATURES}) that vhost-user itself
 * defines, as opposed to the device's and the ring's bits (those live with the device model).
 *
 * <p>libvhost-user once tested {@code features & VHOST_USER_F_PROTOCOL_FEATURES} with the bit number as a mask; here
 * bit numbers are {@code *_BIT} and masks {@code *_MASK}.
 */
public final class VhostUserFeature {
    /**
     * vhost-user.rst "Communication": the back-end supports {@code VHOST_USER_GET_PROTOCOL_FEATURES}; the reserved
     * virtio bit 30, never offered by a virtio device.
     */
    public static final int VHOST_USER_F_PROTOCOL_FEATURES_BIT = 30;

    public static final long VHOST_USER_F_PROTOCOL_FEATURES_MASK = 1L << VHOST_USER_F_PROTOCOL_FEATURES_BIT;

    /** vhost-user.rst "Migration": the back-end logs the guest pages it writes (dirty log). */
    public static final int VHOST_F_LOG_ALL_BIT = 26;

    public static final long VHOST_F_LOG_ALL_MASK = 1L << VHOST_F_LOG_ALL_BIT;

    /** {@code VHOST_VRING_F_LOG}: flag in {@code VhostUserVringAddr.flags}, log writes to the used ring. */
    public static final int VHOST_VRING_F_LOG_BIT = 0;

    public static final int VHOST_VRING_F_LOG_MASK = 1 << VHOST_VRING_F_LOG_BIT;

    /** vhost-user.rst "Migration": dirty-log page size, {@code VHOST_LOG_PAGE}. */
    public static final int VHOST_LOG_PAGE_BYTES = 0x1000;

    private VhostUserFeature() {}
}
