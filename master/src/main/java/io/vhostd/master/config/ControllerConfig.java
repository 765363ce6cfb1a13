package io.vhostd.master.config;

/**
 * One entry of {@code controllers:} — a vhost-user controller (one listening vhost-user socket serving one bdev).
 *
 * @param name unique name, 1..64 characters of {@code [A-Za-z0-9._:-]}; key {@code name}, required
 * @param type device type offered to the front-end, {@value #TYPE_VHOST_USER_BLK}; key {@code type}, required
 * @param bdev name of the bdev served (each bdev is served by at most one controller); key {@code bdev}, required
 * @param socket absolute path of the vhost-user socket (a relative one in the file is resolved against {@code run_dir}),
 *     at most {@value #MAX_SOCKET_PATH_BYTES} bytes, unique; key {@code socket}, required
 * @param numQueues request virtqueues offered, 1..{@value #MAX_NUM_QUEUES}; key {@code num_queues}, default 1
 * @param queueSizeMax largest virtqueue size accepted, a power of two 1..{@value #MAX_QUEUE_SIZE}; key {@code
 *     queue_size_max}, default {@value #DEFAULT_QUEUE_SIZE_MAX}
 * @param serial virtio-blk serial (VIRTIO_BLK_T_GET_ID), at most {@value #SERIAL_MAX_BYTES} bytes of UTF-8; key
 *     {@code serial}, default the name cut to {@value #SERIAL_MAX_BYTES} bytes
 * @param readOnly offer the device read-only (VIRTIO_BLK_F_RO); key {@code read_only}, default the bdev's {@code
 *     read_only}; false is refused for a read-only bdev
 */
public record ControllerConfig(
        String name,
        String type,
        String bdev,
        String socket,
        int numQueues,
        int queueSizeMax,
        String serial,
        boolean readOnly) {
    /** The vhost-user-blk device type. */
    public static final String TYPE_VHOST_USER_BLK = "vhost-user-blk";

    /** Most request virtqueues per controller. */
    public static final int MAX_NUM_QUEUES = 64;

    /** Default {@code queue_size_max}. */
    public static final int DEFAULT_QUEUE_SIZE_MAX = 1024;

    /** virtio 1.2 section 2.7: "Queue Size value is always a power of 2. The maximum Queue Size value is 32768". */
    public static final int MAX_QUEUE_SIZE = 32768;

    /** virtio-blk VIRTIO_BLK_ID_BYTES: the serial returned by VIRTIO_BLK_T_GET_ID. */
    public static final int SERIAL_MAX_BYTES = 20;

    /** sizeof(sockaddr_un.sun_path) - 1 (the terminating NUL) on Linux. */
    public static final int MAX_SOCKET_PATH_BYTES = 107;
}
