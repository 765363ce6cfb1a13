package io.vhostd.vhost.backend;

import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.Virtqueue;
import java.util.List;

/**
 * What the back-end needs from the device model and the data path; the slave implements it. Every method is called
 * on the connection's thread (the one running {@link VhostUserBackend#run()}), one at a time. An exception thrown by a
 * method fails the message that caused the call (the front-end gets the failure reply) unless its Javadoc says
 * otherwise.
 */
public interface VhostUserDevice {
    /**
     * Virtio feature bits offered (device + ring), for {@code VHOST_USER_GET_FEATURES}. The back-end adds {@code
     * VHOST_USER_F_PROTOCOL_FEATURES} and removes what it cannot serve ({@link VhostUserBackend#UNSUPPORTED_FEATURES}).
     */
    long features();

    /**
     * Protocol features offered; the back-end keeps those it implements ({@link
     * VhostUserBackend#SUPPORTED_PROTOCOL_FEATURES}).
     */
    long protocolFeatures();

    /** Number of virtqueues ({@code VHOST_USER_GET_QUEUE_NUM}); queue indexes are 0 .. maxQueues - 1, at most 256. */
    int maxQueues();

    /** Memory slots ({@code VHOST_USER_GET_MAX_MEM_SLOTS}); also the most regions the back-end maps at once. */
    int maxMemSlots();

    /**
     * The device config space; {@code VHOST_USER_GET_CONFIG} returns the requested offset/size window of it (a window
     * outside it fails).
     */
    byte[] config();

    /**
     * {@code VHOST_USER_SET_CONFIG}: the front-end writes {@code data} at {@code offset} of the config space (the
     * back-end checked that the window lies inside {@link #config()}). vhost-user.rst: "back-ends MUST NOT accept
     * SET_CONFIG for read-only configuration space fields": a device accepts a window only if every byte it changes
     * belongs to a field the driver may write. The default accepts nothing (a read-only config space).
     *
     * @param offset offset in the config space
     * @param data the bytes written (a copy the device may keep)
     * @param flags {@code VHOST_SET_CONFIG_TYPE_FRONTEND} (0) or {@code VHOST_SET_CONFIG_TYPE_MIGRATION} (1)
     * @return null if accepted, else why not (the front-end gets the failure reply)
     */
    default String setConfig(int offset, byte[] data, int flags) {
        return "the device config space is read-only";
    }

    /** Features negotiated by {@code VHOST_USER_SET_FEATURES}, after validation (a subset of those offered). */
    void featuresNegotiated(long features);

    /** Protocol features negotiated by {@code VHOST_USER_SET_PROTOCOL_FEATURES} (a subset of those offered). */
    default void protocolFeaturesNegotiated(long protocolFeatures) {}

    /**
     * A replacement back-end continues a session ({@link VhostUserBackend#restore}): these features were negotiated
     * and this memory table set before, by the process that served the session. Called before any queue starts. The
     * default reports them as {@link #featuresNegotiated} and {@link #memoryChanged} would.
     */
    default void sessionRestored(
            long features, long protocolFeatures, GuestMemory memory, List<GuestMemoryRegion> regions) {
        featuresNegotiated(features);
        protocolFeaturesNegotiated(protocolFeatures);
        memoryChanged(memory, regions, List.of());
    }

    /**
     * New guest memory is about to be used. No queue runs during the call (the back-end stopped them and restarts
     * them after). The removed regions are still mapped until this returns; then the back-end unmaps them and closes
     * their fds. Throwing fails the message and keeps the old memory.
     *
     * @param memory the new memory table
     * @param added regions mapped for this table
     * @param removed regions of the old table that this one no longer has
     */
    void memoryChanged(GuestMemory memory, List<GuestMemoryRegion> added, List<GuestMemoryRegion> removed);

    /**
     * The ring is started and enabled: begin processing. The fds belong to the back-end (do not close them); they stay
     * valid until {@link #stopQueue} returns.
     *
     * @param queueIndex the virtqueue
     * @param vq the ring, a {@link io.vhostd.vhost.virtio.SplitVirtqueue} or, with VIRTIO_F_RING_PACKED negotiated, a
     *     {@link io.vhostd.vhost.virtio.PackedVirtqueue}, positioned by {@link Virtqueue#vringBase(int)} at the base
     *     from {@code VHOST_USER_SET_VRING_BASE} (or the last stop)
     * @param kickFd eventfd the front-end signals on new buffers, or -1 (poll the ring)
     * @param callFd eventfd to signal used buffers, or -1 (the front-end polls)
     * @param errFd eventfd to signal errors, or -1
     */
    void startQueue(int queueIndex, Virtqueue vq, int kickFd, int callFd, int errFd);

    /**
     * {@link #startQueue(int, Virtqueue, int, int, int)} with the queue's inflight region ({@code
     * VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD} negotiated and a buffer received). A device that tracks requests in it marks
     * each fetched request before processing it, clears completed ones in two phases around each used-ring publication
     * ({@code batchBegin}, publish, {@code batchEnd}; see {@link VringInflight}), and first resubmits {@link
     * VringInflight#resubmit()} / {@link VringInflight#resubmitChains()} in that order (they are in flight already: not
     * marked again). The default ignores the region and refuses a non-empty resubmission.
     *
     * @param inflight the region, or null (no buffer, or a queue outside it)
     */
    default void startQueue(int queueIndex, Virtqueue vq, int kickFd, int callFd, int errFd, VringInflight inflight) {
        if (inflight != null
                && (!inflight.resubmit().isEmpty() || !inflight.resubmitChains().isEmpty())) {
            throw new IllegalStateException("queue " + queueIndex + ": requests to resubmit, the device ignores them");
        }
        startQueue(queueIndex, vq, kickFd, callFd, errFd);
    }

    /**
     * Stop fetching from the ring, wait until its in-flight requests completed (used elements published) and return
     * the ring's {@link Virtqueue#vringBase()} (split: the next avail index, u16; packed: avail and used positions with
     * their wrap counters), for {@code VHOST_USER_GET_VRING_BASE} and a later restart.
     */
    int stopQueue(int queueIndex);

    /**
     * The back-end received and now holds {@code fd} (for fd custody, DESIGN §3).
     *
     * @param what {@code "connection"}, {@code "kick"}, {@code "call"}, {@code "err"}, {@code "mem"}, {@code
     *     "backend_req"} or {@code "inflight"}
     * @param index queue index for kick/call/err, region id for mem, 0 otherwise
     */
    default void fdReceived(String what, int index, int fd) {}

    /** The back-end is about to close {@code fd} (same {@code what}/{@code index} as {@link #fdReceived}). */
    default void fdReleased(String what, int index, int fd) {}

    /**
     * The connection ended (EOF or a fatal error): every queue has been stopped. Memory is unmapped after this
     * returns. An exception here is logged, not propagated.
     */
    void disconnected();
}
