package io.vhostd.vhost.virtio;

/**
 * The device side of one virtqueue over guest memory, split (virtio 1.2 §2.7, {@link SplitVirtqueue}) or packed
 * (§2.8, {@link PackedVirtqueue}): what a data path needs to take requests and return them.
 *
 * <p>Single owner: one agent thread pops, pushes, publishes and toggles notifications; nothing here is thread-safe.
 * Everything the guest wrote is untrusted and checked as each implementation documents; a chain error gives {@link
 * #POP_MALFORMED} with a {@link ChainError} code, a ring the guest broke beyond a single chain gives an {@link
 * IllegalStateException} (the caller stops using the queue until the front-end resets it).
 *
 * <p>Completion: {@link #pushUsed} writes one used element per request (not yet visible to the guest), {@link
 * #publishUsed()} makes every pushed element visible, then {@link #needsNotification()} says whether to signal the
 * call eventfd.
 *
 * <p>Indexes as vhost-user carries them in {@code VHOST_USER_SET/GET_VRING_BASE} ({@link #vringBase()}): split, the
 * next avail ring counter (u16); packed, {@code avail offset | avail wrap << 15 | (used offset | used wrap << 15) <<
 * 16} (vhost-user.rst "Vring descriptor indices for packed virtqueues").
 */
public sealed interface Virtqueue permits SplitVirtqueue, PackedVirtqueue {

    /** {@link #pop}: no new request is available. */
    int POP_EMPTY = 0;
    /** {@link #pop}: a well-formed chain was taken. */
    int POP_OK = 1;
    /** {@link #pop}: a request was taken but its chain is malformed ({@link DescriptorChain#error()}). */
    int POP_MALFORMED = 2;

    /** The virtqueue's index. */
    int queueIndex();

    /** Queue size (descriptors). */
    int size();

    /** Is this a packed ring (VIRTIO_F_RING_PACKED)? */
    boolean packed();

    /** VIRTIO_RING_F_EVENT_IDX negotiated. */
    boolean eventIdx();

    /** Indirect tables accepted (VIRTIO_RING_F_INDIRECT_DESC). */
    boolean indirectDesc();

    /** Segment cap per chain. */
    int maxSegments();

    /** The guest memory the rings and chains are translated with. */
    GuestMemory memory();

    /** Guest physical address of the descriptor table (split) or descriptor ring (packed). */
    long descGpa();

    /**
     * Is a request available that was not taken yet?
     *
     * @throws IllegalStateException if the guest broke the ring (split: avail->idx more than the size ahead)
     */
    boolean hasAvail();

    /**
     * Takes the next available request and translates its chain into {@code chain}. Every ring field is read once;
     * the request is consumed whatever the outcome. Nothing is written to guest memory.
     *
     * @param chain reused result; its capacity and {@link #maxSegments()} both cap the segments
     * @return {@link #POP_EMPTY}, {@link #POP_OK}, or {@link #POP_MALFORMED} ({@code chain.error() != 0}; {@code
     *     chain.head()} is the id to complete it with, or -1 if there is none, and the segments translated before the
     *     error are kept)
     * @throws IllegalStateException if the guest broke the ring; nothing is consumed
     */
    int pop(DescriptorChain chain);

    /**
     * Writes one used element, not yet visible to the guest (see {@link #publishUsed()}).
     *
     * @param id {@link DescriptorChain#head()} of the completed chain, in [0, size)
     * @param writtenBytes bytes written into the chain's device-writable buffers (u32)
     * @param descriptorCount {@link DescriptorChain#ringDescriptorCount()} of the chain (packed rings skip that many
     *     descriptors; split rings ignore it)
     * @throws IllegalArgumentException if {@code id} or {@code descriptorCount} is out of range (a caller bug)
     */
    void pushUsed(int id, int writtenBytes, int descriptorCount);

    /** Makes every pushed used element visible to the guest, with release ordering. */
    void publishUsed();

    /**
     * After {@link #publishUsed()}: must the device notify the driver (signal the call eventfd)? Follows the driver's
     * notification suppression (split: §2.7.7 / §2.7.10, packed: §2.8.10); the first check after construction or
     * after the used index was set answers true with EVENT_IDX.
     */
    boolean needsNotification();

    /**
     * Enables guest kicks before the caller sleeps.
     *
     * @return true if requests are pending (arrived before the guest could see the change): the caller must not sleep
     * @throws IllegalStateException as {@link #hasAvail()}
     */
    boolean enableNotifications();

    /** Disables guest kicks while the caller polls (with split EVENT_IDX nothing is written: at most one more kick). */
    void disableNotifications();

    /** Next available position to take: split, the avail ring counter (u16); packed, {@code offset | wrap << 15}. */
    int lastAvailIdx();

    /**
     * Sets the next available position (encoded as {@link #lastAvailIdx()}).
     *
     * @throws IllegalArgumentException if a packed offset is &gt;= size
     */
    void lastAvailIdx(int idx);

    /** Next used position the device writes: split, the shadow used idx (u16); packed, {@code offset | wrap << 15}. */
    int usedIdx();

    /**
     * Sets the next used position (encoded as {@link #usedIdx()}); also taken as published, and the next {@link
     * #needsNotification()} with EVENT_IDX answers true.
     *
     * @throws IllegalArgumentException if a packed offset is &gt;= size
     */
    void usedIdx(int idx);

    /** The value {@code VHOST_USER_GET_VRING_BASE} answers for this ring now (see the class comment). */
    int vringBase();

    /**
     * Restores the ring position from {@code VHOST_USER_SET_VRING_BASE}'s value. Split: the next avail index is {@code
     * base} and the used idx is read from used->idx in guest memory (vhost-user.rst: "the device is supposed to read
     * the next index in the Used Ring"). Packed: both positions and wrap counters come from {@code base}.
     *
     * @throws IllegalArgumentException if {@code base} is not a valid value for this ring (split: bits 16-31 set;
     *     packed: an offset &gt;= size)
     */
    void vringBase(int base);
}
