package io.vhostd.journal.inflight;

import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_ADDR_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_FLAGS_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_ID_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_INFLIGHT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_LAST_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_LENGTH;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_LEN_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_NEXT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_PACKED_NUM_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.INFLIGHT_VERSION;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_DESC_NUM_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_DESC_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_FEATURES_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_FREE_HEAD_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_USED_IDX_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_PACKED_VERSION_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.VIRTQ_DESC_F_AVAIL_MASK;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.VIRTQ_DESC_F_USED_MASK;

import io.vhostd.journal.JournalException;
import io.vhostd.journal.StoreObserver;
import io.vhostd.journal.UsedPublisher;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.function.IntUnaryOperator;

/**
 * One packed virtqueue's inflight region ({@code QueueRegionPacked}, vhost-user.rst "Inflight I/O tracking"): the
 * writer the back-end runs per descriptor and per completion batch, and the recovery it runs when the queue starts.
 *
 * <p>Entries of the region form a free list ({@code free_head}, {@code next}); a fetched chain takes {@code num}
 * entries, its head entry carries {@code inflight}, {@code counter}, {@code last} and {@code num}, every entry a copy
 * of its descriptor. A completion batch returns chains to the free list and moves {@code used_idx} /
 * {@code used_wrap_counter}; after the caller published the used descriptors it clears the heads' {@code inflight}
 * and copies the current fields into {@code old_free_head}, {@code old_used_wrap_counter}, {@code old_used_idx}.
 *
 * <p>One deliberate order beyond the text (spec §9.3): the text lists {@code old_free_head, old_used_idx,
 * old_used_wrap_counter}; this writer stores {@code old_used_wrap_counter} before {@code old_used_idx}, because
 * recovery takes "{@code used_idx == old_used_idx}" to mean "no update in progress": with the text's order, a crash
 * between the two stores of a batch that crossed the end of the ring would roll back to a stale wrap counter. Recovery
 * compares the index and the wrap counter, so a batch of exactly {@code desc_num} descriptors is not mistaken for no
 * batch either.
 *
 * <p>Single owner: the queue's thread writes, nothing here is thread-safe. The writer allocates nothing.
 */
public final class InflightRegionPacked {
    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;
    /** Native order, aligned; coordinates (MemorySegment, long offset). */
    private static final VarHandle U16_HANDLE = U16.varHandle();

    private final MemorySegment region;
    private final int queueIndex;
    private final int queueSize;
    private final StoreObserver observer;
    private final boolean[] inflight;
    private final boolean[] mark;
    private boolean started;
    private long counter;
    private int freeHead;
    private int usedIdx;
    private boolean usedWrapCounter;
    private int chainHead = -1;
    private int chainNum;
    private boolean batchOpen;
    private int inflightCount;

    /**
     * Binds a queue region; nothing is read or written until {@link #start}.
     *
     * @param queueRegion the queue's region ({@link InflightRegionDescriptor#queueRegion}), 64-byte aligned
     * @param queueIndex the virtqueue's index (for messages)
     * @param queueSize the virtqueue size, 1..32768
     * @param observer called after each store; {@link StoreObserver#NONE} in production
     * @throws IllegalArgumentException if the queue size is invalid or the region too short or misaligned
     */
    public InflightRegionPacked(MemorySegment queueRegion, int queueIndex, int queueSize, StoreObserver observer) {
        long length = InflightRegionDescriptor.queueRegionPackedLengthBytes(queueSize);
        this.region = InflightRegionDescriptor.checkedQueueRegion(queueRegion, queueIndex, length);
        this.queueIndex = queueIndex;
        this.queueSize = queueSize;
        this.observer = Objects.requireNonNull(observer, "observer");
        this.inflight = new boolean[queueSize];
        this.mark = new boolean[queueSize];
    }

    /**
     * Starts the queue: initialises an uninitialised region at the given used index, or recovers one a previous
     * back-end left (spec §9.3 "Recovery"), in which case the region's indexes win (the front-end does not restore
     * packed ring indexes, SPDK issue #3070). Recovery validates the whole region before it writes anything.
     *
     * @param usedIdx for a fresh region: the used index to start at (below the queue size)
     * @param usedWrapCounter for a fresh region: the used wrap counter (a new ring starts with 1)
     * @param ringDescFlags reads the {@code flags} (u16) of the descriptor at a ring position from guest memory;
     *     called at most once, with {@code old_used_idx}, when an update was in progress
     * @return what to resubmit and where to resume
     * @throws JournalException if the region is of another version, its {@code desc_num} differs from the queue size,
     *     an index or wrap counter is out of range, the free list or a chain is out of range, loops or overlaps, an
     *     entry is neither free nor in a chain, two chains share a counter, or the ring's flags fit neither outcome
     */
    public InflightPackedRecovery start(int usedIdx, boolean usedWrapCounter, IntUnaryOperator ringDescFlags) {
        Objects.requireNonNull(ringDescFlags, "ringDescFlags");
        int version = region.get(U16, QUEUE_REGION_PACKED_VERSION_OFFSET) & 0xFFFF;
        InflightPackedRecovery r;
        if (version == 0) {
            if (usedIdx < 0 || usedIdx >= queueSize) {
                throw new IllegalArgumentException(
                        "vq " + queueIndex + ": used index " + usedIdx + " out of [0, " + queueSize + ")");
            }
            r = initialise(usedIdx, usedWrapCounter);
        } else {
            r = recover(version, ringDescFlags);
        }
        started = true;
        return r;
    }

    private InflightPackedRecovery initialise(int used, boolean wrap) {
        region.set(U64, QUEUE_REGION_PACKED_FEATURES_OFFSET, 0L);
        observer.afterStore("packed.features");
        region.set(U16, QUEUE_REGION_PACKED_DESC_NUM_OFFSET, (short) queueSize);
        observer.afterStore("packed.descNum");
        // DPDK vhost_user_get_inflight_fd: the free list links every entry to the next, desc_num ends it
        for (int j = 0; j < queueSize; j++) {
            region.set(U16, desc(j) + DESC_STATE_PACKED_NEXT_OFFSET, (short) (j + 1));
            region.set(U8, desc(j) + DESC_STATE_PACKED_INFLIGHT_OFFSET, (byte) 0);
        }
        observer.afterStore("packed.freeList");
        putU16(QUEUE_REGION_PACKED_FREE_HEAD_OFFSET, 0, "packed.freeHead");
        putU16(QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET, 0, "packed.oldFreeHead");
        putU8(QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET, wrap ? 1 : 0, "packed.usedWrap");
        putU8(QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET, wrap ? 1 : 0, "packed.oldUsedWrap");
        putU16(QUEUE_REGION_PACKED_USED_IDX_OFFSET, used, "packed.usedIdx");
        putU16(QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET, used, "packed.oldUsedIdx");
        // release: the header and free list are visible before the version that says the region is initialised
        U16_HANDLE.setRelease(region, (long) QUEUE_REGION_PACKED_VERSION_OFFSET, (short) INFLIGHT_VERSION);
        observer.afterStore("packed.version");
        counter = 0;
        freeHead = 0;
        usedIdx = used;
        usedWrapCounter = wrap;
        inflightCount = 0;
        return new InflightPackedRecovery(
                true, used, wrap, used, wrap, List.of(), InflightPackedRecovery.Outcome.CONSISTENT);
    }

    private InflightPackedRecovery recover(int version, IntUnaryOperator ringDescFlags) {
        // --- validate everything before writing anything: the region came from a dead back-end
        if (version != INFLIGHT_VERSION) {
            throw refuse("version " + version + ", this back-end reads version " + INFLIGHT_VERSION);
        }
        long features = region.get(U64, QUEUE_REGION_PACKED_FEATURES_OFFSET);
        if (features != 0) {
            throw refuse("features 0x" + Long.toHexString(features) + ", expected 0");
        }
        int n = queueSize;
        int descNum = u16(QUEUE_REGION_PACKED_DESC_NUM_OFFSET);
        if (descNum != n) {
            throw refuse("desc_num " + descNum + " differs from the queue size " + n);
        }
        int curFree = u16(QUEUE_REGION_PACKED_FREE_HEAD_OFFSET);
        int oldFree = u16(QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET);
        int curUsed = u16(QUEUE_REGION_PACKED_USED_IDX_OFFSET);
        int oldUsed = u16(QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET);
        int curWrap = region.get(U8, QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET) & 0xFF;
        int oldWrap = region.get(U8, QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET) & 0xFF;
        if (curFree > n || oldFree > n) {
            throw refuse("free_head " + curFree + " / old_free_head " + oldFree + " out of [0, " + n + "]");
        }
        if (curUsed >= n || oldUsed >= n) {
            throw refuse("used_idx " + curUsed + " / old_used_idx " + oldUsed + " out of [0, " + n + ")");
        }
        if (curWrap > 1 || oldWrap > 1) {
            throw refuse("used_wrap_counter " + curWrap + " / old_used_wrap_counter " + oldWrap + ", expected 0 or 1");
        }
        for (int i = 0; i < n; i++) {
            int f = region.get(U8, desc(i) + DESC_STATE_PACKED_INFLIGHT_OFFSET) & 0xFF;
            if (f > 1) {
                throw refuse("desc[" + i + "].inflight is " + f + ", expected 0 or 1");
            }
        }

        // vhost-user.rst "When reconnecting" 1: an update is in progress if used_idx (and, here, the wrap counter)
        // differs from its old_* copy; the descriptor at old_used_idx tells whether the batch reached the guest
        InflightPackedRecovery.Outcome outcome = InflightPackedRecovery.Outcome.CONSISTENT;
        if (curUsed != oldUsed || curWrap != oldWrap) {
            int flags = ringDescFlags.applyAsInt(oldUsed) & (VIRTQ_DESC_F_AVAIL_MASK | VIRTQ_DESC_F_USED_MASK);
            // virtio 1.2 §2.8.1: available in this lap = AVAIL is the wrap counter, USED its inverse; used = both
            // equal. 1b: "Use old_used_wrap_counter to calculate the available flags"
            int availFlags = oldWrap == 1 ? VIRTQ_DESC_F_AVAIL_MASK : VIRTQ_DESC_F_USED_MASK;
            int usedThisLap = oldWrap == 1 ? VIRTQ_DESC_F_AVAIL_MASK | VIRTQ_DESC_F_USED_MASK : 0;
            // a used descriptor of the other lap: the writer died after storing the flipped old_used_wrap_counter of
            // a batch that crossed the end of the ring, before old_used_idx (batchEnd's order), so it was published
            int usedOtherLap = oldWrap == 1 ? 0 : VIRTQ_DESC_F_AVAIL_MASK | VIRTQ_DESC_F_USED_MASK;
            if (flags == availFlags) {
                outcome = InflightPackedRecovery.Outcome.ROLLED_BACK;
            } else if (flags == usedThisLap || flags == usedOtherLap && curWrap == oldWrap && curUsed < oldUsed) {
                // 1c: "d.flags is not equal to the calculated flags value": the buffer reached the guest
                outcome = InflightPackedRecovery.Outcome.COMMITTED;
            } else {
                // available for the next lap, or used in the other lap without a wrapped batch: impossible at the
                // first position of a pending batch
                throw refuse("the ring descriptor at old_used_idx " + oldUsed + " has flags 0x"
                        + Integer.toHexString(flags) + ", neither available (0x" + Integer.toHexString(availFlags)
                        + ") nor used for wrap counter " + oldWrap);
            }
        }
        boolean commit = outcome == InflightPackedRecovery.Outcome.COMMITTED;
        // step 2: the state after the decision (a commit keeps the current fields, anything else rolls back to old_*)
        int effFree = commit ? curFree : oldFree;
        int effUsed = commit ? curUsed : oldUsed;
        int effWrap = commit ? curWrap : oldWrap;

        // step 3 (validation part): walk the free list, at most n entries
        boolean[] isFree = new boolean[n];
        int e = effFree;
        int freeCount = 0;
        while (e != n) {
            if (e > n) {
                throw refuse("free list entry " + freeCount + " links to " + e + ", out of [0, " + n + "]");
            }
            if (isFree[e]) {
                throw refuse(
                        "free list from " + effFree + " loops back to entry " + e + " after " + freeCount + " entries");
            }
            isFree[e] = true;
            freeCount++;
            e = u16(desc(e) + DESC_STATE_PACKED_NEXT_OFFSET);
        }
        // step 4 (validation part): every entry not free belongs to exactly one in-flight chain
        boolean[] claimed = new boolean[n];
        List<InflightChain> chains = new ArrayList<>();
        int claimedCount = 0;
        long availAdvance = 0;
        for (int h = 0; h < n; h++) {
            if (isFree[h] || region.get(U8, desc(h) + DESC_STATE_PACKED_INFLIGHT_OFFSET) != 1 || claimed[h]) {
                continue;
            }
            int num = u16(desc(h) + DESC_STATE_PACKED_NUM_OFFSET);
            int last = u16(desc(h) + DESC_STATE_PACKED_LAST_OFFSET);
            if (num < 1 || num > n - freeCount) {
                throw refuse("chain at entry " + h + " has num " + num + ", expected 1.." + (n - freeCount));
            }
            List<InflightDesc> descs = new ArrayList<>(num);
            int c = h;
            for (int k = 0; k < num; k++) {
                if (c >= n || isFree[c] || claimed[c]) {
                    throw refuse("chain at entry " + h + ": its entry " + k + " is " + c
                            + (c >= n ? ", out of range" : isFree[c] ? ", which is free" : ", already in a chain"));
                }
                claimed[c] = true;
                descs.add(new InflightDesc(
                        region.get(U64, desc(c) + DESC_STATE_PACKED_ADDR_OFFSET),
                        region.get(U32, desc(c) + DESC_STATE_PACKED_LEN_OFFSET),
                        u16(desc(c) + DESC_STATE_PACKED_ID_OFFSET),
                        u16(desc(c) + DESC_STATE_PACKED_FLAGS_OFFSET)));
                if (k == num - 1 && c != last) {
                    throw refuse("chain at entry " + h + " ends at entry " + c + " but its last is " + last);
                }
                if (k < num - 1) {
                    c = u16(desc(c) + DESC_STATE_PACKED_NEXT_OFFSET);
                }
            }
            claimedCount += num;
            availAdvance += num;
            chains.add(new InflightChain(h, region.get(U64, desc(h) + DESC_STATE_PACKED_COUNTER_OFFSET), descs));
        }
        if (freeCount + claimedCount != n) {
            throw refuse((n - freeCount - claimedCount) + " entries are neither free nor in an in-flight chain");
        }
        chains.sort(Comparator.comparingLong(InflightChain::counter));
        for (int i = 1; i < chains.size(); i++) {
            if (chains.get(i).counter() == chains.get(i - 1).counter()) {
                throw refuse("chains at entries " + chains.get(i - 1).headEntry() + " and "
                        + chains.get(i).headEntry() + " share counter "
                        + chains.get(i).counter());
            }
        }

        // --- repair; each store is idempotent under a second crash
        if (commit) {
            // 1c: commit the in-progress update, in the writer's own order (old_used_idx last)
            putU16(QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET, curFree, "packed.recover.oldFreeHead");
            putU8(QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET, curWrap, "packed.recover.oldUsedWrap");
            // release, last: as in batchEnd, old_used_idx == used_idx ends the update
            putU16Release(QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET, curUsed, "packed.recover.oldUsedIdx");
        } else {
            // 2: roll back any in-progress update
            putU16(QUEUE_REGION_PACKED_FREE_HEAD_OFFSET, oldFree, "packed.recover.freeHead");
            putU8(QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET, oldWrap, "packed.recover.usedWrap");
            putU16(QUEUE_REGION_PACKED_USED_IDX_OFFSET, oldUsed, "packed.recover.usedIdx");
        }
        // 3: clear inflight of every entry in the free list (a torn fetch's head, returned chains)
        for (int i = 0; i < n; i++) {
            if (isFree[i] && region.get(U8, desc(i) + DESC_STATE_PACKED_INFLIGHT_OFFSET) != 0) {
                region.set(U8, desc(i) + DESC_STATE_PACKED_INFLIGHT_OFFSET, (byte) 0);
                observer.afterStore("packed.recover.inflight");
            }
        }
        for (InflightChain chain : chains) {
            inflight[chain.headEntry()] = true;
        }
        inflightCount = chains.size();
        counter = chains.isEmpty() ? 0 : chains.getLast().counter() + 1;
        freeHead = effFree;
        usedIdx = effUsed;
        usedWrapCounter = effWrap == 1;
        // the descriptors consumed are the used ones plus those of the chains in flight
        long availPos = effUsed + availAdvance;
        boolean availWrap = usedWrapCounter;
        if (availPos >= n) {
            availPos -= n;
            availWrap = !availWrap;
        }
        return new InflightPackedRecovery(false, effUsed, usedWrapCounter, (int) availPos, availWrap, chains, outcome);
    }

    /**
     * Records one descriptor of a chain fetched from the ring (vhost-user.rst "When receiving available buffers from
     * the driver", steps 1–6), in ring order.
     *
     * @param addr the descriptor's buffer address
     * @param len the descriptor's buffer length (u32)
     * @param id the descriptor's buffer id (u16)
     * @param flags the descriptor's flags (u16)
     * @param first the descriptor is the chain's head
     * @param last the descriptor is the chain's last
     * @return the region entry of the chain's head: pass it to {@link #batchBegin} when the chain completes
     * @throws IllegalStateException if the queue is not started, a batch is open, a chain is open and {@code first}
     *     is set (or none is and it is not), or the region has no free entry left
     */
    public int descriptorFetched(long addr, int len, int id, int flags, boolean first, boolean last) {
        checkStarted();
        if (batchOpen) {
            throw new IllegalStateException("vq " + queueIndex + ": a completion batch is open");
        }
        if (first) {
            if (chainHead >= 0) {
                throw new IllegalStateException("vq " + queueIndex + ": a chain is already being fetched");
            }
            int h = freeHead;
            if (h >= queueSize) {
                throw new IllegalStateException("vq " + queueIndex + ": no free inflight entry");
            }
            // step 2a-d: the head entry (free_head == old_free_head between chains)
            putU16(desc(h) + DESC_STATE_PACKED_NUM_OFFSET, 0, "packed.num");
            region.set(U64, desc(h) + DESC_STATE_PACKED_COUNTER_OFFSET, counter);
            observer.afterStore("packed.counter");
            counter++;
            putU8(desc(h) + DESC_STATE_PACKED_INFLIGHT_OFFSET, 1, "packed.inflight");
            chainHead = h;
            chainNum = 0;
        } else if (chainHead < 0) {
            throw new IllegalStateException("vq " + queueIndex + ": descriptor without a chain head");
        }
        int e = freeHead;
        if (e >= queueSize) {
            throw new IllegalStateException("vq " + queueIndex + ": chain longer than the free inflight entries");
        }
        if (last) {
            // step 3
            putU16(desc(chainHead) + DESC_STATE_PACKED_LAST_OFFSET, e, "packed.last");
        }
        // step 4
        chainNum++;
        putU16(desc(chainHead) + DESC_STATE_PACKED_NUM_OFFSET, chainNum, "packed.num");
        // step 5: the descriptor copy
        region.set(U64, desc(e) + DESC_STATE_PACKED_ADDR_OFFSET, addr);
        region.set(U32, desc(e) + DESC_STATE_PACKED_LEN_OFFSET, len);
        region.set(U16, desc(e) + DESC_STATE_PACKED_FLAGS_OFFSET, (short) flags);
        region.set(U16, desc(e) + DESC_STATE_PACKED_ID_OFFSET, (short) id);
        observer.afterStore("packed.copy");
        // step 6
        freeHead = u16(desc(e) + DESC_STATE_PACKED_NEXT_OFFSET);
        putU16(QUEUE_REGION_PACKED_FREE_HEAD_OFFSET, freeHead, "packed.freeHead");
        int head = chainHead;
        if (last) {
            // step 7, release: the chain's entries are visible before old_free_head commits them
            putU16Release(QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET, freeHead, "packed.oldFreeHead");
            inflight[head] = true;
            inflightCount++;
            chainHead = -1;
        }
        return head;
    }

    /**
     * Steps 1–5 of "When supplying used buffers to the driver" for a batch: each chain goes back to the free list
     * ({@code desc[e.last].next = free_head; free_head = e}), then {@code used_idx} moves by the chains' descriptor
     * counts and {@code used_wrap_counter} flips if it passes the end. Call before the used descriptors are written.
     *
     * @param headEntries the completed chains' head entries, any order
     * @param count how many, in [1, queue size]
     * @throws IllegalArgumentException if count or an entry is out of range, or an entry appears twice
     * @throws IllegalStateException if the queue is not started, a chain or batch is open, or an entry is not in
     *     flight
     */
    public void batchBegin(int[] headEntries, int count) {
        checkStarted();
        if (chainHead >= 0 || batchOpen) {
            throw new IllegalStateException("vq " + queueIndex + ": a chain or a batch is open");
        }
        checkBatch(headEntries, count);
        int total = 0;
        for (int i = 0; i < count; i++) {
            int e = headEntries[i];
            int last = u16(desc(e) + DESC_STATE_PACKED_LAST_OFFSET);
            putU16(desc(last) + DESC_STATE_PACKED_NEXT_OFFSET, freeHead, "packed.next");
            putU16(QUEUE_REGION_PACKED_FREE_HEAD_OFFSET, e, "packed.freeHead");
            freeHead = e;
            total += u16(desc(e) + DESC_STATE_PACKED_NUM_OFFSET);
        }
        int newUsed = usedIdx + total;
        boolean newWrap = usedWrapCounter;
        if (newUsed >= queueSize) {
            newUsed -= queueSize;
            newWrap = !newWrap;
        }
        putU8(QUEUE_REGION_PACKED_USED_WRAP_COUNTER_OFFSET, newWrap ? 1 : 0, "packed.usedWrap");
        putU16(QUEUE_REGION_PACKED_USED_IDX_OFFSET, newUsed, "packed.usedIdx");
        usedIdx = newUsed;
        usedWrapCounter = newWrap;
        batchOpen = true;
    }

    /**
     * Steps 7–8, after the used descriptors (the first one's flags last) are written: each head's {@code inflight =
     * 0}, then {@code old_free_head}, {@code old_used_wrap_counter} and, last, {@code old_used_idx} take the current
     * values.
     *
     * @param headEntries the entries {@link #batchBegin} took
     * @param count how many
     * @throws IllegalStateException if no batch is open
     */
    public void batchEnd(int[] headEntries, int count) {
        if (!batchOpen) {
            throw new IllegalStateException("vq " + queueIndex + ": no completion batch open");
        }
        for (int i = 0; i < count; i++) {
            putU8(desc(headEntries[i]) + DESC_STATE_PACKED_INFLIGHT_OFFSET, 0, "packed.clear");
        }
        putU16(QUEUE_REGION_PACKED_OLD_FREE_HEAD_OFFSET, freeHead, "packed.oldFreeHead");
        putU8(QUEUE_REGION_PACKED_OLD_USED_WRAP_COUNTER_OFFSET, usedWrapCounter ? 1 : 0, "packed.oldUsedWrap");
        // release, last: old_used_idx == used_idx is what tells recovery that no update is in progress
        putU16Release(QUEUE_REGION_PACKED_OLD_USED_IDX_OFFSET, usedIdx, "packed.oldUsedIdx");
        for (int i = 0; i < count; i++) {
            inflight[headEntries[i]] = false;
        }
        inflightCount -= count;
        batchOpen = false;
    }

    /**
     * A whole completion batch: {@link #batchBegin}, {@code publisher} writes the used descriptors, {@link
     * #batchEnd}.
     *
     * @param headEntries the completed chains' head entries
     * @param count how many
     * @param publisher writes the used descriptors, the first one's flags last
     */
    public void completed(int[] headEntries, int count, UsedPublisher publisher) {
        batchBegin(headEntries, count);
        publisher.publishUsed(queueIndex);
        batchEnd(headEntries, count);
    }

    /** The used index (below the queue size) as this writer last stored it. */
    public int usedIdx() {
        return usedIdx;
    }

    /** The used wrap counter as this writer last stored it. */
    public boolean usedWrapCounter() {
        return usedWrapCounter;
    }

    /** The counter the next chain gets. */
    public long counter() {
        return counter;
    }

    /** Chains in flight. */
    public int inflightCount() {
        return inflightCount;
    }

    private void checkBatch(int[] heads, int count) {
        if (count < 1 || count > queueSize || count > heads.length) {
            throw new IllegalArgumentException("vq " + queueIndex + ": batch count " + count + " out of [1, "
                    + Math.min(queueSize, heads.length) + "]");
        }
        int i = 0;
        try {
            for (; i < count; i++) {
                int h = heads[i];
                if (h < 0 || h >= queueSize) {
                    throw new IllegalArgumentException(
                            "vq " + queueIndex + ": entry " + h + " out of [0, " + queueSize + ")");
                }
                if (!inflight[h]) {
                    throw new IllegalStateException("vq " + queueIndex + ": entry " + h + " is not in flight");
                }
                if (mark[h]) {
                    throw new IllegalArgumentException("vq " + queueIndex + ": entry " + h + " twice in one batch");
                }
                mark[h] = true;
            }
        } finally {
            for (int k = 0; k < i; k++) {
                mark[heads[k]] = false;
            }
        }
    }

    private void checkStarted() {
        if (!started) {
            throw new IllegalStateException("vq " + queueIndex + ": inflight region not started");
        }
    }

    private int u16(long offset) {
        return region.get(U16, offset) & 0xFFFF;
    }

    private void putU16(long offset, int value, String field) {
        region.set(U16, offset, (short) value);
        observer.afterStore(field);
    }

    private void putU16Release(long offset, int value, String field) {
        U16_HANDLE.setRelease(region, offset, (short) value);
        observer.afterStore(field);
    }

    private void putU8(long offset, int value, String field) {
        region.set(U8, offset, (byte) value);
        observer.afterStore(field);
    }

    private JournalException refuse(String why) {
        return new JournalException("inflight region (packed) of vq " + queueIndex + " refused: " + why);
    }

    private static long desc(int i) {
        return QUEUE_REGION_PACKED_DESC_OFFSET + (long) DESC_STATE_PACKED_LENGTH * i;
    }
}
