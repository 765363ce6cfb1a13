package io.vhostd.journal.inflight;

import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_COUNTER_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_INFLIGHT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_LENGTH;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.DESC_STATE_SPLIT_NEXT_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.INFLIGHT_VERSION;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_NUM_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_FEATURES_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_USED_IDX_OFFSET;
import static io.vhostd.journal.inflight.InflightRegionDescriptor.QUEUE_REGION_SPLIT_VERSION_OFFSET;

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

/**
 * One split virtqueue's inflight region ({@code QueueRegionSplit}, vhost-user.rst "Inflight I/O tracking"): the
 * writer the back-end runs per request, and the recovery it runs when the queue starts.
 *
 * <p>Writer steps (vhost-user.rst, spec §9.2): on fetch {@code desc[i].counter = counter++; desc[i].inflight = 1}; on
 * a completion batch {@code desc[i].next = last_batch_head; last_batch_head = i} per head ({@link #batchBegin}), then
 * the caller increases the used ring's {@code idx} by the batch size, then {@code desc[i].inflight = 0} per head and
 * {@code used_idx = used->idx} ({@link #batchEnd}).
 *
 * <p>Two deliberate choices beyond the text: an uninitialised region gets {@code used_idx} from the ring's {@code
 * used->idx} when the queue starts, so that {@code used_idx} is never a stale 0 (SPDK issue #3766: DPDK compared a
 * default 0 with a non-zero {@code used->idx} and cleared {@code desc[last_batch_head = 0]}, dropping a real request);
 * and recovery clears the whole torn batch (the list of {@code used->idx - used_idx} heads from {@code
 * last_batch_head}), as the text says, not only {@code desc[last_batch_head]} as libvhost-user does.
 *
 * <p>Single owner: the queue's thread writes, nothing here is thread-safe. The writer allocates nothing.
 */
public final class InflightRegionSplit {
    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;
    /** Native order, aligned; coordinates (MemorySegment, long offset). */
    private static final VarHandle U8_HANDLE = U8.varHandle();

    private static final VarHandle U16_HANDLE = U16.varHandle();

    private final MemorySegment region;
    private final int queueIndex;
    private final int queueSize;
    private final StoreObserver observer;
    private final boolean[] inflight;
    private final boolean[] mark;
    private boolean started;
    private long counter;
    private int usedIdx;
    private int lastBatchHead;
    private int inflightCount;

    /**
     * Binds a queue region; nothing is read or written until {@link #start}.
     *
     * @param queueRegion the queue's region ({@link InflightRegionDescriptor#queueRegion}), 64-byte aligned
     * @param queueIndex the virtqueue's index (for messages)
     * @param queueSize the virtqueue size ({@code queue_size} of {@code VhostUserInflight}), a power of two
     * @param observer called after each store; {@link StoreObserver#NONE} in production
     * @throws IllegalArgumentException if the queue size is invalid or the region too short or misaligned
     */
    public InflightRegionSplit(MemorySegment queueRegion, int queueIndex, int queueSize, StoreObserver observer) {
        long length = InflightRegionDescriptor.queueRegionSplitLengthBytes(queueSize);
        if (Integer.bitCount(queueSize) != 1) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": split queue size " + queueSize + " is not a power of two");
        }
        this.region = InflightRegionDescriptor.checkedQueueRegion(queueRegion, queueIndex, length);
        this.queueIndex = queueIndex;
        this.queueSize = queueSize;
        this.observer = Objects.requireNonNull(observer, "observer");
        this.inflight = new boolean[queueSize];
        this.mark = new boolean[queueSize];
    }

    /**
     * Starts the queue ({@code VHOST_USER_SET_VRING_KICK}): initialises an uninitialised region, or recovers one a
     * previous back-end left (spec §9.2 "Recovery"). Recovery validates the whole region before it writes anything
     * and refuses a region that a correct writer cannot have left.
     *
     * @param ringUsedIdx the used ring's {@code idx}, which the caller reads from guest memory (u16)
     * @return what to resubmit and where to resume
     * @throws JournalException if the region is of another version, its {@code desc_num} differs from the queue size,
     *     an {@code inflight} byte is not 0 or 1, two heads in flight share a counter, or a torn last batch cannot be
     *     walked ({@code used->idx - used_idx} larger than the queue, a head out of range, a cycle)
     */
    public InflightSplitRecovery start(int ringUsedIdx) {
        int ringIdx = ringUsedIdx & 0xFFFF;
        int version = region.get(U16, QUEUE_REGION_SPLIT_VERSION_OFFSET) & 0xFFFF;
        InflightSplitRecovery r = version == 0 ? initialise(ringIdx) : recover(version, ringIdx);
        started = true;
        return r;
    }

    private InflightSplitRecovery initialise(int ringIdx) {
        // libvhost-user initialises only version; we also set desc_num and a used_idx that matches the ring (#3766)
        region.set(U64, QUEUE_REGION_SPLIT_FEATURES_OFFSET, 0L);
        observer.afterStore("split.features");
        region.set(U16, QUEUE_REGION_SPLIT_DESC_NUM_OFFSET, (short) queueSize);
        observer.afterStore("split.descNum");
        region.set(U16, QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET, (short) 0);
        observer.afterStore("split.lastBatchHead");
        region.set(U16, QUEUE_REGION_SPLIT_USED_IDX_OFFSET, (short) ringIdx);
        observer.afterStore("split.usedIdx");
        // release: the header is visible before the version that says the region is initialised
        U16_HANDLE.setRelease(region, (long) QUEUE_REGION_SPLIT_VERSION_OFFSET, (short) INFLIGHT_VERSION);
        observer.afterStore("split.version");
        counter = 0;
        usedIdx = ringIdx;
        lastBatchHead = 0;
        inflightCount = 0;
        return new InflightSplitRecovery(true, ringIdx, ringIdx, List.of(), 0);
    }

    private InflightSplitRecovery recover(int version, int ringIdx) {
        // --- validate everything before writing anything: the region came from a dead back-end
        if (version != INFLIGHT_VERSION) {
            throw refuse("version " + version + ", this back-end reads version " + INFLIGHT_VERSION);
        }
        long features = region.get(U64, QUEUE_REGION_SPLIT_FEATURES_OFFSET);
        if (features != 0) {
            throw refuse("features 0x" + Long.toHexString(features) + ", expected 0");
        }
        int descNum = region.get(U16, QUEUE_REGION_SPLIT_DESC_NUM_OFFSET) & 0xFFFF;
        if (descNum != queueSize) {
            throw refuse("desc_num " + descNum + " differs from the queue size " + queueSize);
        }
        for (int i = 0; i < queueSize; i++) {
            int f = region.get(U8, desc(i) + DESC_STATE_SPLIT_INFLIGHT_OFFSET) & 0xFF;
            if (f > 1) {
                throw refuse("desc[" + i + "].inflight is " + f + ", expected 0 or 1");
            }
        }
        int regionUsedIdx = region.get(U16, QUEUE_REGION_SPLIT_USED_IDX_OFFSET) & 0xFFFF;
        int lbh = region.get(U16, QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET) & 0xFFFF;
        // vhost-user.rst "When reconnecting" 1a: the last batch's size is used->idx - used_idx
        int batchSize = (ringIdx - regionUsedIdx) & 0xFFFF;
        if (batchSize > queueSize) {
            throw refuse("used->idx " + ringIdx + " is " + batchSize + " entries past used_idx " + regionUsedIdx
                    + ", more than the queue size: used_idx is stale, not a torn batch (SPDK #3766 pattern)");
        }
        int[] batch = new int[batchSize];
        boolean[] inBatch = new boolean[queueSize];
        int h = lbh;
        for (int k = 0; k < batchSize; k++) {
            // bounded walk: batchSize steps, each index checked, each visited once
            if (h >= queueSize) {
                throw refuse("torn batch entry " + k + " is head " + h + ", out of [0, " + queueSize + ")");
            }
            if (inBatch[h]) {
                throw refuse("torn batch list from last_batch_head " + lbh + " loops back to head " + h + " after "
                        + k + " of " + batchSize + " entries"
                        + (lbh == 0 ? " (last_batch_head 0 with no batch written: SPDK #3766 pattern)" : ""));
            }
            inBatch[h] = true;
            batch[k] = h;
            h = region.get(U16, desc(h) + DESC_STATE_SPLIT_NEXT_OFFSET) & 0xFFFF;
        }
        List<InflightHead> heads = new ArrayList<>();
        for (int i = 0; i < queueSize; i++) {
            if (!inBatch[i] && region.get(U8, desc(i) + DESC_STATE_SPLIT_INFLIGHT_OFFSET) == 1) {
                heads.add(new InflightHead(i, region.get(U64, desc(i) + DESC_STATE_SPLIT_COUNTER_OFFSET)));
            }
        }
        heads.sort(Comparator.comparingLong(InflightHead::counter));
        for (int i = 1; i < heads.size(); i++) {
            if (heads.get(i).counter() == heads.get(i - 1).counter()) {
                throw refuse("heads " + heads.get(i - 1).head() + " and "
                        + heads.get(i).head() + " share counter " + heads.get(i).counter()
                        + ": the fetch order is lost");
            }
        }

        // --- repair (vhost-user.rst "When reconnecting" 1b, 1c); each store is idempotent under a second crash
        for (int k = 0; k < batchSize; k++) {
            if (region.get(U8, desc(batch[k]) + DESC_STATE_SPLIT_INFLIGHT_OFFSET) != 0) {
                region.set(U8, desc(batch[k]) + DESC_STATE_SPLIT_INFLIGHT_OFFSET, (byte) 0);
                observer.afterStore("split.recover.inflight");
            }
        }
        if (batchSize != 0) {
            // release: the cleared flags are visible before used_idx says the batch is done
            U16_HANDLE.setRelease(region, (long) QUEUE_REGION_SPLIT_USED_IDX_OFFSET, (short) ringIdx);
            observer.afterStore("split.recover.usedIdx");
        }
        for (InflightHead head : heads) {
            inflight[head.head()] = true;
        }
        inflightCount = heads.size();
        counter = heads.isEmpty() ? 0 : heads.getLast().counter() + 1;
        usedIdx = ringIdx;
        lastBatchHead = lbh;
        // libvhost-user: last_avail_idx = used_idx + inuse
        int lastAvailIdx = (ringIdx + heads.size()) & 0xFFFF;
        return new InflightSplitRecovery(false, ringIdx, lastAvailIdx, heads, batchSize);
    }

    /**
     * Records a fetched head (vhost-user.rst "When receiving available buffers from the driver"): {@code
     * desc[head].counter = counter++}, then {@code desc[head].inflight = 1}.
     *
     * @param head the head descriptor index, below the queue size, not in flight
     * @throws IllegalArgumentException if the head is out of range
     * @throws IllegalStateException if the queue is not started or the head is in flight
     */
    public void fetched(int head) {
        checkStarted();
        checkHead(head);
        if (inflight[head]) {
            throw new IllegalStateException("vq " + queueIndex + ": head " + head + " is already in flight");
        }
        region.set(U64, desc(head) + DESC_STATE_SPLIT_COUNTER_OFFSET, counter);
        observer.afterStore("split.counter");
        // release: the counter is visible before the flag that puts the head in flight
        U8_HANDLE.setRelease(region, desc(head) + DESC_STATE_SPLIT_INFLIGHT_OFFSET, (byte) 1);
        observer.afterStore("split.inflight");
        counter++;
        inflight[head] = true;
        inflightCount++;
    }

    /**
     * Steps 1–3 of "When supplying used buffers to the driver", for each head of the batch: {@code desc[i].next =
     * last_batch_head; last_batch_head = i}. Call before the used ring's {@code idx} moves.
     *
     * @param heads the completed heads, any order
     * @param count how many of {@code heads}, in [1, queue size]
     * @throws IllegalArgumentException if count or a head is out of range, or a head appears twice
     * @throws IllegalStateException if the queue is not started or a head is not in flight
     */
    public void batchBegin(int[] heads, int count) {
        checkStarted();
        checkBatch(heads, count);
        for (int i = 0; i < count; i++) {
            int h = heads[i];
            region.set(U16, desc(h) + DESC_STATE_SPLIT_NEXT_OFFSET, (short) lastBatchHead);
            observer.afterStore("split.next");
            region.set(U16, QUEUE_REGION_SPLIT_LAST_BATCH_HEAD_OFFSET, (short) h);
            observer.afterStore("split.lastBatchHead");
            lastBatchHead = h;
        }
    }

    /**
     * Steps 6–7, after the used ring's {@code idx} moved by {@code count}: {@code desc[i].inflight = 0} per head, then
     * {@code used_idx = used->idx}.
     *
     * @param heads the heads {@link #batchBegin} took
     * @param count how many
     * @return the new {@code used_idx}
     */
    public int batchEnd(int[] heads, int count) {
        checkStarted();
        for (int i = 0; i < count; i++) {
            region.set(U8, desc(heads[i]) + DESC_STATE_SPLIT_INFLIGHT_OFFSET, (byte) 0);
            observer.afterStore("split.clear");
        }
        int newUsedIdx = (usedIdx + count) & 0xFFFF;
        // release: the cleared flags are visible before used_idx says the batch is done
        U16_HANDLE.setRelease(region, (long) QUEUE_REGION_SPLIT_USED_IDX_OFFSET, (short) newUsedIdx);
        observer.afterStore("split.usedIdx");
        for (int i = 0; i < count; i++) {
            inflight[heads[i]] = false;
        }
        inflightCount -= count;
        usedIdx = newUsedIdx;
        return newUsedIdx;
    }

    /**
     * A whole completion batch: {@link #batchBegin}, {@code publisher} moves the used ring's {@code idx} by {@code
     * count}, {@link #batchEnd}.
     *
     * @param heads the completed heads
     * @param count how many
     * @param publisher release-stores {@code used->idx}
     * @return the new {@code used_idx}
     */
    public int completed(int[] heads, int count, UsedPublisher publisher) {
        batchBegin(heads, count);
        publisher.publishUsed(queueIndex);
        return batchEnd(heads, count);
    }

    /** The region's {@code used_idx} as this writer last stored it. */
    public int usedIdx() {
        return usedIdx;
    }

    /** The counter the next fetch gets. */
    public long counter() {
        return counter;
    }

    /** Heads in flight. */
    public int inflightCount() {
        return inflightCount;
    }

    /**
     * @param head a head index
     * @return whether it is in flight
     */
    public boolean isInflight(int head) {
        checkHead(head);
        return inflight[head];
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
                checkHead(h);
                if (!inflight[h]) {
                    throw new IllegalStateException("vq " + queueIndex + ": head " + h + " is not in flight");
                }
                if (mark[h]) {
                    throw new IllegalArgumentException("vq " + queueIndex + ": head " + h + " twice in one batch");
                }
                mark[h] = true;
            }
        } finally {
            for (int k = 0; k < i; k++) {
                mark[heads[k]] = false;
            }
        }
    }

    private void checkHead(int head) {
        if (head < 0 || head >= queueSize) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": head " + head + " out of [0, " + queueSize + ")");
        }
    }

    private void checkStarted() {
        if (!started) {
            throw new IllegalStateException("vq " + queueIndex + ": inflight region not started");
        }
    }

    private JournalException refuse(String why) {
        return new JournalException("inflight region (split) of vq " + queueIndex + " refused: " + why);
    }

    private static long desc(int i) {
        return QUEUE_REGION_SPLIT_DESC_OFFSET + (long) DESC_STATE_SPLIT_LENGTH * i;
    }
}
