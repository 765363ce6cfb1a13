package io.vhostd.journal;

import static io.vhostd.journal.JournalDescriptor.CACHE_MODE_UNRECORDED;
import static io.vhostd.journal.JournalDescriptor.CACHE_MODE_WRITEBACK;
import static io.vhostd.journal.JournalDescriptor.CACHE_MODE_WRITE_THROUGH;
import static io.vhostd.journal.JournalDescriptor.CELL_DESC_OFFSET;
import static io.vhostd.journal.JournalDescriptor.CELL_ID_OFFSET;
import static io.vhostd.journal.JournalDescriptor.CELL_POSITION_OFFSET;
import static io.vhostd.journal.JournalDescriptor.ENTRY_COPY_LENGTH;
import static io.vhostd.journal.JournalDescriptor.INT_LE;
import static io.vhostd.journal.JournalDescriptor.LONG_LE;
import static io.vhostd.journal.JournalDescriptor.MAX_MEM_REGIONS;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_GUEST_PHYS_ADDR_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_ID_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_LENGTH;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_MEMORY_SIZE_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_MMAP_OFFSET_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_USER_ADDR_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_BATCH_COUNT_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_BATCH_WORD_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_FETCH_WORD_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_USED_WORD_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_CACHE_MODE_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_FEATURES_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_FEATURES_SET_MASK;
import static io.vhostd.journal.JournalDescriptor.SESSION_FLAGS_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_MEM_REGION_COUNT_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_MEM_TABLE_SET_MASK;
import static io.vhostd.journal.JournalDescriptor.SESSION_PROTOCOL_FEATURES_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_PROTOCOL_FEATURES_SET_MASK;
import static io.vhostd.journal.JournalDescriptor.SHORT_LE;
import static io.vhostd.journal.JournalDescriptor.SLOT_ENTRY_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SLOT_SEQ_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_ADDR_FLAGS_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_AVAIL_GPA_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_CONFIGURED_MASK;
import static io.vhostd.journal.JournalDescriptor.VRING_DESC_GPA_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_ENABLED_MASK;
import static io.vhostd.journal.JournalDescriptor.VRING_ENTRY_COPIES_MASK;
import static io.vhostd.journal.JournalDescriptor.VRING_FLAGS_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_LOG_GUEST_ADDR_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_PACKED_MASK;
import static io.vhostd.journal.JournalDescriptor.VRING_SIZE_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_SLOT_COUNT_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_STARTED_MASK;
import static io.vhostd.journal.JournalDescriptor.VRING_START_AVAIL_IDX_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_START_BATCH_SEQ_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_START_FETCH_SEQ_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_START_USED_IDX_OFFSET;
import static io.vhostd.journal.JournalDescriptor.VRING_USED_GPA_OFFSET;

import io.vhostd.journal.inflight.InflightDesc;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The slave's writer of one session journal ({@code journal/spec/journal.md}): the configuration a replacement slave
 * needs (features, memory table, vrings) and, per virtqueue, the last avail index, the used index and the requests in
 * flight in fetch order, with copies of fetched entries where the guest may reuse its slots early.
 *
 * <p>Every update is atomic across a crash at any instruction (spec §6): configuration changes are written into the
 * inactive of two copies and committed by one release store of the configuration generation; a fetch writes its slot
 * and commits it with one release store of the queue's fetch word; a completion batch is two-phase: its slot list is
 * committed by the batch word before the caller publishes the used index to the guest, and applied (slots freed, used
 * word stored) after. Recovery ({@link JournalRecovery}) decides an interrupted batch from the guest's used index.
 *
 * <p>Threads: the configuration methods ({@code record*}) are for the control thread and synchronized. The data-path
 * methods of one queue ({@link #requestFetched}, {@link #availSkipped}, {@link #completionsBegin}, {@link
 * #completionsEnd}, {@link #requestsCompleted}) belong to the one thread that serves that queue and allocate nothing;
 * {@link #recordQueueStarted} and {@link #recordQueueStopped} must not run concurrently with them (the slave hands
 * start and stop to the queue's thread, or stops the thread first). Misuse by the caller (a slot fetched twice, a
 * completion of a slot not in flight) throws {@link IllegalArgumentException} or {@link IllegalStateException} before
 * anything is stored.
 *
 * <p>A packed ring with entry copies (spec §6.5, version 1.2) keeps a copy of every ring descriptor of every chain in
 * flight, because the device writes used descriptors in place and the guest may reuse ring positions before an older
 * chain completes: {@link #packedDescriptorFetched} stages one descriptor in a free cell (a slot of the queue),
 * {@link #packedChainFetched} commits the chain under its buffer id, and completion batches name buffer ids.
 */
public final class SessionJournal {
    private final MemorySegment journal;
    private final StoreObserver observer;
    private final int maxQueues;
    private final int maxSlots;
    private final int entryLength;
    private final long configLength;
    private final long batchListOffset;
    private final QueueState[] queues;
    private long generation;

    /** Writer state of one queue; touched by the queue's thread (data path) or, while stopped, the control thread. */
    private static final class QueueState {
        final long offset;
        boolean started;
        int size;
        boolean packed;
        int slotCount;
        boolean entryCopies;
        long fetchSeq;
        int lastAvailIdx;
        int appliedBatchSeq;
        int usedIdx;
        boolean[] inflight = new boolean[0];
        boolean[] mark = new boolean[0];
        int[] pendingSlots = new int[0];
        int inflightCount;
        boolean pending;
        int pendingCount;
        int pendingNewUsedIdx;

        // ---- packed ring with entry copies (spec §6.5): slots are cells, requests are buffer ids ----
        /** Whether the slots are cells of ring descriptor copies; {@link #inflight} is then indexed by buffer id. */
        boolean cells;
        /** Cell → the next cell of the same chain, or -1. */
        int[] cellNext = new int[0];
        /** Buffer id → the chain's first cell, or -1. */
        int[] chainFirstCell = new int[0];
        /** Free cells (a stack). */
        int[] freeCells = new int[0];

        int freeCellCount;
        /** Cells of the chain being fetched (F1 stored, not committed), in chain order. */
        int[] stagedCells = new int[0];

        int stagedCount;
        int stagedId;

        QueueState(long offset) {
            this.offset = offset;
        }

        void allocate(int slots) {
            slotCount = slots;
            inflight = new boolean[slots];
            mark = new boolean[slots];
            pendingSlots = new int[slots];
            inflightCount = 0;
            pending = false;
            stagedCount = 0;
            if (cells) {
                cellNext = new int[slots];
                chainFirstCell = new int[slots];
                Arrays.fill(chainFirstCell, -1);
                freeCells = new int[slots];
                stagedCells = new int[slots];
                freeCellCount = 0;
                // popped in ascending order
                for (int c = slots - 1; c >= 0; c--) {
                    freeCells[freeCellCount++] = c;
                }
            }
        }
    }

    private SessionJournal(MemorySegment journal, StoreObserver observer, long generation) {
        this.journal = journal;
        this.observer = observer;
        this.maxQueues = JournalDescriptor.maxQueues(journal);
        this.maxSlots = JournalDescriptor.maxSlots(journal);
        this.entryLength = JournalDescriptor.entryLength(journal);
        this.configLength = JournalDescriptor.configLengthBytes(maxQueues);
        this.batchListOffset = JournalDescriptor.batchListOffset(maxSlots, entryLength);
        this.queues = new QueueState[maxQueues];
        for (int i = 0; i < maxQueues; i++) {
            queues[i] = new QueueState(JournalDescriptor.queueOffset(maxQueues, maxSlots, entryLength, i));
        }
        this.generation = generation;
    }

    /**
     * Same as {@link #open(MemorySegment, RecoveredSession, StoreObserver)} with {@link StoreObserver#NONE}.
     *
     * @param journal the mapped journal region
     * @param recovered what {@link JournalRecovery#recover} returned for this region
     * @return the writer
     */
    public static SessionJournal open(MemorySegment journal, RecoveredSession recovered) {
        return open(journal, recovered, StoreObserver.NONE);
    }

    /**
     * Takes over a journal after {@link JournalRecovery#recover}: repairs what the dead writer left half done (spec
     * §7.5: frees a torn fetch's slot, applies a batch that was rolled forward, retires one that was rolled back; each
     * repair is itself crash-safe and idempotent) and continues from the recovered state. A freshly formatted region
     * is opened the same way (its recovery is empty). The recovered requests stay in flight under their original
     * fetch sequence: the caller resubmits them and completes them like any other.
     *
     * @param journal the mapped journal region (64-byte aligned)
     * @param recovered what {@link JournalRecovery#recover} returned for this region, with nothing written since
     * @param observer called after each store (tests); {@link StoreObserver#NONE} in production
     * @return the writer
     * @throws JournalException if the region fails {@link JournalDescriptor#checkVersion} / {@link
     *     JournalDescriptor#checkLength} or its configuration changed since {@code recovered} was read
     */
    public static SessionJournal open(MemorySegment journal, RecoveredSession recovered, StoreObserver observer) {
        Objects.requireNonNull(recovered, "recovered");
        Objects.requireNonNull(observer, "observer");
        JournalDescriptor.checkVersion(journal);
        JournalDescriptor.checkLength(journal);
        long generation = JournalDescriptor.configGenerationAcquire(journal);
        if (generation != recovered.configGeneration()) {
            throw new JournalException("journal configuration changed since recovery: generation "
                    + recovered.configGeneration() + " recovered, " + generation + " now");
        }
        SessionJournal j = new SessionJournal(journal, observer, generation);
        for (QueueConfig qc : recovered.config().queues()) {
            if (qc.started()) {
                RecoveredQueue rq = recovered.queue(qc.queueIndex());
                if (rq == null) {
                    throw new IllegalArgumentException("recovered session lacks started queue " + qc.queueIndex());
                }
                j.resumeQueue(qc, rq);
            }
        }
        return j;
    }

    private void resumeQueue(QueueConfig qc, RecoveredQueue rq) {
        QueueState q = queues[qc.queueIndex()];
        q.cells = qc.vring().packed() && qc.vring().entryCopies();
        q.allocate(qc.vring().slotCount());
        q.size = qc.vring().size();
        q.packed = qc.vring().packed();
        q.entryCopies = qc.vring().entryCopies();
        q.fetchSeq =
                JournalDescriptor.fetchSeq(JournalDescriptor.wordAcquire(journal, q.offset + QUEUE_FETCH_WORD_OFFSET));
        q.lastAvailIdx = rq.lastAvailIdx();
        long usedWord = JournalDescriptor.wordAcquire(journal, q.offset + QUEUE_USED_WORD_OFFSET);
        q.appliedBatchSeq = JournalDescriptor.wordBatchSeq(usedWord);
        q.usedIdx = rq.usedIdx();
        if (rq.tornFetchSlot() >= 0) {
            // spec §7.5 step 1: the torn fetch's slot holds a sequence not yet committed; free it so that no later
            // fetch can commit the same sequence twice
            putLong(slotSeqOffset(q, rq.tornFetchSlot()), 0L, "repair.tornSlot");
            if (q.cells) {
                // spec §7.5 step 1, packed: every cell of the torn chain
                long torn = JournalDescriptor.nextSeq(q.fetchSeq);
                for (int c = 0; c < q.slotCount; c++) {
                    if (journal.get(LONG_LE, slotSeqOffset(q, c)) == torn) {
                        putLong(slotSeqOffset(q, c), 0L, "repair.tornSlot");
                    }
                }
            }
        }
        switch (rq.interruptedBatch()) {
            case ROLLED_FORWARD -> {
                // spec §7.5 step 2: finish the published batch exactly as completionsEnd would
                int count = journal.get(INT_LE, q.offset + QUEUE_BATCH_COUNT_OFFSET);
                int batchSeq = q.appliedBatchSeq + 1;
                for (int i = 0; i < count; i++) {
                    int slot = journal.get(SHORT_LE, q.offset + batchListOffset + 2L * i) & 0xFFFF;
                    putLong(slotSeqOffset(q, slot), 0L, "repair.slotFree");
                }
                // release: the freed slots are visible before the used word that applies the batch
                JournalDescriptor.wordRelease(
                        journal, q.offset + QUEUE_USED_WORD_OFFSET, JournalDescriptor.usedWord(batchSeq, rq.usedIdx()));
                observer.afterStore("repair.usedCommit");
                q.appliedBatchSeq = batchSeq;
            }
            case ROLLED_BACK -> {
                // spec §7.5 step 3: the batch never reached the guest; retire it so that it is not pending any more
                JournalDescriptor.wordRelease(
                        journal,
                        q.offset + QUEUE_BATCH_WORD_OFFSET,
                        JournalDescriptor.batchWord(q.appliedBatchSeq, rq.usedIdx()));
                observer.afterStore("repair.batchRetire");
            }
            case NONE -> {}
        }
        for (InflightRequest r : rq.inflight()) {
            q.inflight[r.slot()] = true;
        }
        q.inflightCount = rq.inflight().size();
        if (q.cells) {
            resumeCells(q, rq);
        }
        q.started = true;
    }

    /** Packed cells after the repair: rebuilds each chain's cell list from the sequences and positions (§6.5). */
    private void resumeCells(QueueState q, RecoveredQueue rq) {
        Map<Long, Integer> idBySeq = new HashMap<>();
        for (InflightRequest r : rq.inflight()) {
            idBySeq.put(r.fetchSeq(), r.slot());
        }
        int[] chainLength = new int[q.slotCount];
        int[][] chainCells = new int[q.slotCount][];
        for (InflightRequest r : rq.inflight()) {
            chainCells[r.slot()] = new int[r.entry().length / JournalDescriptor.CELL_DESC_LENGTH];
        }
        q.freeCellCount = 0;
        for (int c = q.slotCount - 1; c >= 0; c--) {
            long seq = journal.get(LONG_LE, slotSeqOffset(q, c));
            Integer id = seq == 0 ? null : idBySeq.get(seq);
            if (id == null) {
                q.freeCells[q.freeCellCount++] = c;
                continue;
            }
            int position =
                    journal.get(SHORT_LE, slotSeqOffset(q, c) + SLOT_ENTRY_OFFSET + CELL_POSITION_OFFSET) & 0xFFFF;
            chainCells[id][position] = c;
            chainLength[id]++;
        }
        for (InflightRequest r : rq.inflight()) {
            int[] cells = chainCells[r.slot()];
            if (chainLength[r.slot()] != cells.length) {
                throw new IllegalArgumentException("queue " + rq.queueIndex() + ": buffer id " + r.slot()
                        + " does not match the region's cells (recovered from another region?)");
            }
            q.chainFirstCell[r.slot()] = cells[0];
            for (int k = 0; k < cells.length; k++) {
                q.cellNext[cells[k]] = k + 1 < cells.length ? cells[k + 1] : -1;
            }
        }
    }

    /** Max queues of the region (queue indexes are below it). */
    public int maxQueues() {
        return maxQueues;
    }

    /** Max slots per queue of the region. */
    public int maxSlots() {
        return maxSlots;
    }

    /** Entry copy length of the region: 0 or 64. */
    public int entryLength() {
        return entryLength;
    }

    /** The committed configuration generation. */
    public synchronized long configGeneration() {
        return generation;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Configuration (control thread), spec §6.3

    /**
     * Records the negotiated virtio features ({@code VHOST_USER_SET_FEATURES}).
     *
     * @param features the feature bits
     */
    public synchronized void recordFeatures(long features) {
        long c = beginConfig();
        putLong(c + SESSION_FEATURES_OFFSET, features, "config.features");
        putInt(c + SESSION_FLAGS_OFFSET, sessionFlags(c) | SESSION_FEATURES_SET_MASK, "config.sessionFlags");
        commitConfig();
    }

    /**
     * Records the negotiated protocol features ({@code VHOST_USER_SET_PROTOCOL_FEATURES}).
     *
     * @param protocolFeatures the protocol feature bits
     */
    public synchronized void recordProtocolFeatures(long protocolFeatures) {
        long c = beginConfig();
        putLong(c + SESSION_PROTOCOL_FEATURES_OFFSET, protocolFeatures, "config.protocolFeatures");
        putInt(c + SESSION_FLAGS_OFFSET, sessionFlags(c) | SESSION_PROTOCOL_FEATURES_SET_MASK, "config.sessionFlags");
        commitConfig();
    }

    /**
     * Records the device's cache mode (virtio-blk {@code writeback}, virtio 1.2 §5.2.5: the driver's choice through
     * {@code VHOST_USER_SET_CONFIG}), so that a replacement slave serves with the same mode (spec §5.2, version 1.1).
     *
     * @param writeback true for writeback, false for write-through
     */
    public synchronized void recordCacheMode(boolean writeback) {
        long c = beginConfig();
        putInt(
                c + SESSION_CACHE_MODE_OFFSET,
                writeback ? CACHE_MODE_WRITEBACK : CACHE_MODE_WRITE_THROUGH,
                "config.cacheMode");
        commitConfig();
    }

    /**
     * Records the whole memory table ({@code VHOST_USER_SET_MEM_TABLE}, or the table after {@code ADD_MEM_REG} /
     * {@code REM_MEM_REG}).
     *
     * @param regions at most {@link JournalDescriptor#MAX_MEM_REGIONS}, with disjoint guest ranges and distinct ids
     * @throws IllegalArgumentException if there are too many regions, two overlap or two share an id
     */
    public synchronized void recordMemoryTable(List<JournalMemoryRegion> regions) {
        checkMemoryTable(regions);
        long c = beginConfig();
        putInt(c + SESSION_MEM_REGION_COUNT_OFFSET, regions.size(), "config.memRegionCount");
        for (int i = 0; i < MAX_MEM_REGIONS; i++) {
            long r = c + JournalDescriptor.memRegionOffset(i);
            if (i < regions.size()) {
                JournalMemoryRegion m = regions.get(i);
                journal.set(LONG_LE, r + MEM_REGION_GUEST_PHYS_ADDR_OFFSET, m.guestPhysAddr());
                journal.set(LONG_LE, r + MEM_REGION_MEMORY_SIZE_OFFSET, m.memorySize());
                journal.set(LONG_LE, r + MEM_REGION_USER_ADDR_OFFSET, m.userAddr());
                journal.set(LONG_LE, r + MEM_REGION_MMAP_OFFSET_OFFSET, m.mmapOffset());
                journal.set(INT_LE, r + MEM_REGION_ID_OFFSET, m.regionId());
                journal.set(INT_LE, r + MEM_REGION_ID_OFFSET + 4, 0);
                observer.afterStore("config.memRegion");
            } else {
                journal.asSlice(r, MEM_REGION_LENGTH).fill((byte) 0);
            }
        }
        putInt(c + SESSION_FLAGS_OFFSET, sessionFlags(c) | SESSION_MEM_TABLE_SET_MASK, "config.sessionFlags");
        commitConfig();
    }

    /**
     * Records a virtqueue's configuration ({@code VHOST_USER_SET_VRING_NUM} + {@code VHOST_USER_SET_VRING_ADDR}). A
     * started queue may change its addresses and address flags (e.g. {@code VHOST_VRING_F_LOG} for migration), not its
     * size, ring layout, slot count or entry copies.
     *
     * @param queueIndex below {@link #maxQueues()}
     * @param vring the configuration
     * @throws IllegalArgumentException if the queue index or the slot count is out of range, or entry copies are asked
     *     of a region without them
     * @throws IllegalStateException if the queue is started and the change is not allowed
     */
    public synchronized void recordVring(int queueIndex, VringConfig vring) {
        checkQueueIndex(queueIndex);
        Objects.requireNonNull(vring, "vring");
        if (vring.slotCount() > maxSlots) {
            throw new IllegalArgumentException("queue " + queueIndex + ": slot count " + vring.slotCount()
                    + " exceeds the journal's max slots " + maxSlots);
        }
        if (vring.entryCopies() && entryLength != ENTRY_COPY_LENGTH) {
            throw new IllegalArgumentException(
                    "queue " + queueIndex + ": entry copies asked of a journal formatted without them");
        }
        if (vring.packed() && vring.entryCopies() && vring.slotCount() != vring.size()) {
            // spec §6.5: one cell per ring descriptor in flight, and at most size descriptors are in flight
            throw new IllegalArgumentException("queue " + queueIndex + ": a packed ring with entry copies needs one"
                    + " slot per ring descriptor: slot count " + vring.slotCount() + ", size " + vring.size());
        }
        QueueState q = queues[queueIndex];
        long c = beginConfig();
        long v = c + JournalDescriptor.vringConfigOffset(queueIndex);
        int flags = journal.get(INT_LE, v + VRING_FLAGS_OFFSET);
        if (q.started
                && (journal.get(INT_LE, v + VRING_SIZE_OFFSET) != vring.size()
                        || ((flags & VRING_PACKED_MASK) != 0) != vring.packed()
                        || q.slotCount != vring.slotCount()
                        || q.entryCopies != vring.entryCopies())) {
            throw new IllegalStateException("queue " + queueIndex
                    + " is started: only its addresses may change, not size, layout, slot count or entry copies");
        }
        putInt(v + VRING_SIZE_OFFSET, vring.size(), "config.vringSize");
        putInt(v + VRING_SLOT_COUNT_OFFSET, vring.slotCount(), "config.vringSlotCount");
        putInt(v + VRING_ADDR_FLAGS_OFFSET, vring.addrFlags(), "config.vringAddrFlags");
        putLong(v + VRING_DESC_GPA_OFFSET, vring.descGpa(), "config.vringDesc");
        putLong(v + VRING_AVAIL_GPA_OFFSET, vring.availGpa(), "config.vringAvail");
        putLong(v + VRING_USED_GPA_OFFSET, vring.usedGpa(), "config.vringUsed");
        putLong(v + VRING_LOG_GUEST_ADDR_OFFSET, vring.logGuestAddr(), "config.vringLog");
        int newFlags = (flags & (VRING_STARTED_MASK | VRING_ENABLED_MASK))
                | VRING_CONFIGURED_MASK
                | (vring.packed() ? VRING_PACKED_MASK : 0)
                | (vring.entryCopies() ? VRING_ENTRY_COPIES_MASK : 0);
        putInt(v + VRING_FLAGS_OFFSET, newFlags, "config.vringFlags");
        commitConfig();
    }

    /**
     * Records {@code VHOST_USER_SET_VRING_ENABLE}.
     *
     * @param queueIndex a configured queue
     * @param enabled the new state
     * @throws IllegalStateException if the queue is not configured
     */
    public synchronized void recordVringEnabled(int queueIndex, boolean enabled) {
        checkQueueIndex(queueIndex);
        long c = beginConfig();
        long v = c + JournalDescriptor.vringConfigOffset(queueIndex);
        int flags = configuredFlags(v, queueIndex);
        putInt(
                v + VRING_FLAGS_OFFSET,
                enabled ? flags | VRING_ENABLED_MASK : flags & ~VRING_ENABLED_MASK,
                "config.vringFlags");
        commitConfig();
    }

    /**
     * Records that a queue starts (spec §6.4): at {@code lastAvailIdx} ({@code VHOST_USER_SET_VRING_BASE}) and at
     * {@code usedIdx}, the used index the caller read from the ring now (so that the journal's used index is never
     * stale, the trap of SPDK issue #3766). One commit: a crash leaves the queue either stopped or started at these
     * indexes with nothing in flight.
     *
     * @param queueIndex a configured, stopped queue
     * @param lastAvailIdx u16 (packed: index | avail wrap counter &lt;&lt; 15, index below the size)
     * @param usedIdx split: u16; packed: index | used wrap counter &lt;&lt; 15, index below the size
     * @throws IllegalArgumentException if an index is out of range
     * @throws IllegalStateException if the queue is not configured or already started
     */
    public synchronized void recordQueueStarted(int queueIndex, int lastAvailIdx, int usedIdx) {
        checkQueueIndex(queueIndex);
        QueueState q = queues[queueIndex];
        if (q.started) {
            throw new IllegalStateException("queue " + queueIndex + " already started");
        }
        long active = activeConfigOffset();
        long av = active + JournalDescriptor.vringConfigOffset(queueIndex);
        int flags = configuredFlags(av, queueIndex);
        int size = journal.get(INT_LE, av + VRING_SIZE_OFFSET);
        boolean packed = (flags & VRING_PACKED_MASK) != 0;
        checkIndex(queueIndex, "last avail index", lastAvailIdx, size, packed);
        checkIndex(queueIndex, "used index", usedIdx, size, packed);
        int slotCount = journal.get(INT_LE, av + VRING_SLOT_COUNT_OFFSET);
        // spec §6.4 step 1: no slot of a stopped queue may look in flight once it starts
        for (int s = 0; s < slotCount; s++) {
            if (journal.get(LONG_LE, slotSeqOffset(q, s)) != 0) {
                putLong(slotSeqOffset(q, s), 0L, "start.slotFree");
            }
        }
        long fetchSeq =
                JournalDescriptor.fetchSeq(JournalDescriptor.wordAcquire(journal, q.offset + QUEUE_FETCH_WORD_OFFSET));
        int batchSeq = JournalDescriptor.wordBatchSeq(
                JournalDescriptor.wordAcquire(journal, q.offset + QUEUE_USED_WORD_OFFSET));
        long batchWord = JournalDescriptor.wordAcquire(journal, q.offset + QUEUE_BATCH_WORD_OFFSET);
        if (JournalDescriptor.wordBatchSeq(batchWord) != batchSeq) {
            // spec §6.4 step 2: a batch word left pending would make the started queue look mid-batch; release
            // orders it after the slot stores above
            JournalDescriptor.wordRelease(
                    journal, q.offset + QUEUE_BATCH_WORD_OFFSET, JournalDescriptor.batchWord(batchSeq, usedIdx));
            observer.afterStore("start.batchRetire");
        }
        long c = beginConfig();
        long v = c + JournalDescriptor.vringConfigOffset(queueIndex);
        putLong(v + VRING_START_FETCH_SEQ_OFFSET, fetchSeq, "config.startFetchSeq");
        putInt(v + VRING_START_AVAIL_IDX_OFFSET, lastAvailIdx & 0xFFFF, "config.startAvail");
        putInt(v + VRING_START_USED_IDX_OFFSET, usedIdx, "config.startUsed");
        putInt(v + VRING_START_BATCH_SEQ_OFFSET, batchSeq, "config.startBatchSeq");
        putInt(v + VRING_FLAGS_OFFSET, flags | VRING_STARTED_MASK, "config.vringFlags");
        commitConfig();
        q.cells = packed && (flags & VRING_ENTRY_COPIES_MASK) != 0;
        q.allocate(slotCount);
        q.size = size;
        q.packed = packed;
        q.entryCopies = (flags & VRING_ENTRY_COPIES_MASK) != 0;
        q.fetchSeq = fetchSeq;
        q.lastAvailIdx = lastAvailIdx & 0xFFFF;
        q.appliedBatchSeq = batchSeq;
        q.usedIdx = usedIdx;
        q.started = true;
    }

    /**
     * Records that a queue stopped ({@code VHOST_USER_GET_VRING_BASE}, after its requests were completed).
     *
     * @param queueIndex a started queue
     * @throws IllegalStateException if the queue is not started, has requests in flight or a batch in progress
     */
    public synchronized void recordQueueStopped(int queueIndex) {
        checkQueueIndex(queueIndex);
        QueueState q = queues[queueIndex];
        if (!q.started) {
            throw new IllegalStateException("queue " + queueIndex + " is not started");
        }
        if (q.inflightCount != 0 || q.pending) {
            throw new IllegalStateException("queue " + queueIndex + " cannot stop with " + q.inflightCount
                    + " requests in flight" + (q.pending ? " and a completion batch in progress" : ""));
        }
        long c = beginConfig();
        long v = c + JournalDescriptor.vringConfigOffset(queueIndex);
        putInt(
                v + VRING_FLAGS_OFFSET,
                journal.get(INT_LE, v + VRING_FLAGS_OFFSET) & ~VRING_STARTED_MASK,
                "config.vringFlags");
        commitConfig();
        q.started = false;
    }

    /**
     * Forgets the whole session configuration (the front-end reset the device or a new front-end connected): every
     * queue unconfigured, no features, no memory table. The cache mode ({@link #recordCacheMode}) stays.
     *
     * @throws IllegalStateException if a queue is started
     */
    public synchronized void recordSessionReset() {
        for (int i = 0; i < maxQueues; i++) {
            if (queues[i].started) {
                throw new IllegalStateException("queue " + i + " is started: stop it before a session reset");
            }
        }
        long c = beginConfig();
        // the cache mode belongs to the device, not the connection: QEMU does not write it again after a reconnect
        int cacheMode = journal.get(INT_LE, c + SESSION_CACHE_MODE_OFFSET);
        journal.asSlice(c, configLength).fill((byte) 0);
        observer.afterStore("config.reset");
        if (cacheMode != CACHE_MODE_UNRECORDED) {
            putInt(c + SESSION_CACHE_MODE_OFFSET, cacheMode, "config.cacheMode");
        }
        commitConfig();
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Data path (the queue's thread), spec §6.1 and §6.2

    /**
     * Records a request fetched from the guest ring (spec §6.1): its slot gets the next fetch sequence, and one release
     * store commits the slot together with the new last avail index.
     *
     * @param queueIndex a started queue without entry copies
     * @param slot the request's slot, below the queue's slot count, not in flight (a virtqueue: the head index)
     * @param lastAvailIdx the last avail index after this fetch (u16; packed: with the wrap counter in bit 15)
     * @throws IllegalArgumentException if the slot or the index is out of range, or the queue keeps entry copies
     * @throws IllegalStateException if the queue is not started, the slot is in flight or a batch is in progress
     */
    public void requestFetched(int queueIndex, int slot, int lastAvailIdx) {
        fetched(queueIndex, slot, lastAvailIdx, null, 0);
    }

    /**
     * Records a request fetched from a queue whose entries the guest may reuse early (an NVMe SQ): as {@link
     * #requestFetched(int, int, int)}, and the slot keeps a copy of the 64-byte entry.
     *
     * @param queueIndex a started queue with entry copies
     * @param slot the request's slot
     * @param lastAvailIdx the last avail index after this fetch (the SQ head)
     * @param entry the segment holding the fetched entry (e.g. the private copy the slave validated)
     * @param entryOffset offset of the 64 bytes in {@code entry}
     * @throws IllegalArgumentException if the slot is out of range or the queue keeps no entry copies
     * @throws IllegalStateException if the queue is not started, the slot is in flight or a batch is in progress
     */
    public void requestFetched(int queueIndex, int slot, int lastAvailIdx, MemorySegment entry, long entryOffset) {
        fetched(queueIndex, slot, lastAvailIdx, Objects.requireNonNull(entry, "entry"), entryOffset);
    }

    private void fetched(int queueIndex, int slot, int lastAvailIdx, MemorySegment entry, long entryOffset) {
        QueueState q = dataQueue(queueIndex);
        checkNoBatch(q, queueIndex);
        if (q.cells) {
            throw new IllegalArgumentException("queue " + queueIndex
                    + ": a packed ring with entry copies records chains (packedDescriptorFetched, packedChainFetched)");
        }
        checkSlot(q, queueIndex, slot);
        checkRingIndex(q, queueIndex, "last avail index", lastAvailIdx);
        if (q.inflight[slot]) {
            throw new IllegalStateException("queue " + queueIndex + ": slot " + slot + " is already in flight");
        }
        if ((entry != null) != q.entryCopies) {
            throw new IllegalArgumentException("queue " + queueIndex
                    + (q.entryCopies
                            ? ": keeps entry copies, the fetch must pass the entry"
                            : ": keeps no entry copies"));
        }
        long seq = JournalDescriptor.nextSeq(q.fetchSeq);
        long slotOffset = slotSeqOffset(q, slot);
        if (entry != null) {
            MemorySegment.copy(entry, entryOffset, journal, slotOffset + SLOT_ENTRY_OFFSET, ENTRY_COPY_LENGTH);
            observer.afterStore("fetch.entry");
        }
        putLong(slotOffset + SLOT_SEQ_OFFSET, seq, "fetch.slotSeq");
        // release: the slot's sequence and entry copy are visible before the fetch word that commits them
        JournalDescriptor.wordRelease(
                journal, q.offset + QUEUE_FETCH_WORD_OFFSET, JournalDescriptor.fetchWord(seq, lastAvailIdx));
        observer.afterStore("fetch.commit");
        q.fetchSeq = seq;
        q.lastAvailIdx = lastAvailIdx & 0xFFFF;
        q.inflight[slot] = true;
        q.inflightCount++;
    }

    /**
     * Records an avail entry consumed without a request in flight (an invalid head that gets no used element): the
     * last avail index moves, with one release store.
     *
     * @param queueIndex a started queue
     * @param lastAvailIdx the last avail index after the entry
     * @throws IllegalStateException if the queue is not started or a batch is in progress
     */
    public void availSkipped(int queueIndex, int lastAvailIdx) {
        QueueState q = dataQueue(queueIndex);
        checkNoBatch(q, queueIndex);
        checkRingIndex(q, queueIndex, "last avail index", lastAvailIdx);
        dropStaged(q);
        long seq = JournalDescriptor.nextSeq(q.fetchSeq);
        // release: orders this commit after the previous ones (one word, nothing else to publish)
        JournalDescriptor.wordRelease(
                journal, q.offset + QUEUE_FETCH_WORD_OFFSET, JournalDescriptor.fetchWord(seq, lastAvailIdx));
        observer.afterStore("fetch.commit");
        q.fetchSeq = seq;
        q.lastAvailIdx = lastAvailIdx & 0xFFFF;
    }

    /**
     * Stages one ring descriptor of a packed chain being fetched (spec §6.5, store F1): its copy goes into a free cell.
     * Call it for each ring descriptor of the chain in ring order, then {@link #packedChainFetched}; nothing is
     * committed before that. Staged descriptors of a chain that is not committed are dropped by the next {@link
     * #availSkipped} or by a descriptor staged for another buffer id.
     *
     * @param queueIndex a started packed queue with entry copies
     * @param chainId the chain's buffer id (the id of its last descriptor, virtio 1.2 §2.8.6), below the ring size
     * @param addr the descriptor's {@code addr} as read from the ring
     * @param lenBytes its {@code len} (u32)
     * @param descId its {@code id} (u16)
     * @param flags its {@code flags} (u16)
     * @throws IllegalArgumentException if the queue keeps no packed copies or the id is out of range
     * @throws IllegalStateException if the queue is not started, a batch is in progress, the id is in flight, or more
     *     ring descriptors would be in flight than the ring has (impossible for a correct ring, virtio 1.2 §2.8)
     */
    public void packedDescriptorFetched(int queueIndex, int chainId, long addr, int lenBytes, int descId, int flags) {
        QueueState q = cellQueue(queueIndex);
        checkNoBatch(q, queueIndex);
        checkSlot(q, queueIndex, chainId);
        if (q.inflight[chainId]) {
            throw new IllegalStateException("queue " + queueIndex + ": buffer id " + chainId + " is already in flight");
        }
        if (q.stagedCount > 0 && q.stagedId != chainId) {
            dropStaged(q);
        }
        if (q.freeCellCount == 0) {
            throw new IllegalStateException("queue " + queueIndex + ": more than " + q.slotCount
                    + " ring descriptors in flight on a ring of size " + q.size);
        }
        int cell = q.freeCells[--q.freeCellCount];
        long e = slotSeqOffset(q, cell) + SLOT_ENTRY_OFFSET;
        journal.set(LONG_LE, e + CELL_DESC_OFFSET, addr);
        journal.set(INT_LE, e + CELL_DESC_OFFSET + 8, lenBytes);
        journal.set(SHORT_LE, e + CELL_DESC_OFFSET + 12, (short) descId);
        journal.set(SHORT_LE, e + CELL_DESC_OFFSET + 14, (short) flags);
        journal.set(SHORT_LE, e + CELL_POSITION_OFFSET, (short) q.stagedCount);
        journal.set(SHORT_LE, e + CELL_ID_OFFSET, (short) chainId);
        observer.afterStore("fetch.cell");
        q.stagedCells[q.stagedCount++] = cell;
        q.stagedId = chainId;
    }

    /**
     * Commits the packed chain whose ring descriptors {@link #packedDescriptorFetched} staged (spec §6.5, stores F2 and
     * F3): each of its cells gets the next fetch sequence, then one release store of the fetch word commits the chain
     * with the new last avail position.
     *
     * @param queueIndex a started packed queue with entry copies
     * @param chainId the buffer id the descriptors were staged for
     * @param lastAvailIdx the last avail position after the chain: index | avail wrap counter &lt;&lt; 15
     * @throws IllegalArgumentException if the queue keeps no packed copies or an index is out of range
     * @throws IllegalStateException if nothing was staged for {@code chainId} or a batch is in progress
     */
    public void packedChainFetched(int queueIndex, int chainId, int lastAvailIdx) {
        QueueState q = cellQueue(queueIndex);
        checkNoBatch(q, queueIndex);
        checkSlot(q, queueIndex, chainId);
        checkRingIndex(q, queueIndex, "last avail index", lastAvailIdx);
        if (q.stagedCount == 0 || q.stagedId != chainId) {
            throw new IllegalStateException("queue " + queueIndex + ": no descriptor staged for buffer id " + chainId);
        }
        long seq = JournalDescriptor.nextSeq(q.fetchSeq);
        for (int k = 0; k < q.stagedCount; k++) {
            putLong(slotSeqOffset(q, q.stagedCells[k]), seq, "fetch.slotSeq");
        }
        // release: the cells' sequences and copies are visible before the fetch word that commits them
        JournalDescriptor.wordRelease(
                journal, q.offset + QUEUE_FETCH_WORD_OFFSET, JournalDescriptor.fetchWord(seq, lastAvailIdx));
        observer.afterStore("fetch.commit");
        for (int k = 0; k < q.stagedCount; k++) {
            q.cellNext[q.stagedCells[k]] = k + 1 < q.stagedCount ? q.stagedCells[k + 1] : -1;
        }
        q.chainFirstCell[chainId] = q.stagedCells[0];
        q.stagedCount = 0;
        q.fetchSeq = seq;
        q.lastAvailIdx = lastAvailIdx & 0xFFFF;
        q.inflight[chainId] = true;
        q.inflightCount++;
    }

    /** Returns staged, uncommitted cells to the free stack (their sequence was never stored: they are free). */
    private static void dropStaged(QueueState q) {
        while (q.stagedCount > 0) {
            q.freeCells[q.freeCellCount++] = q.stagedCells[--q.stagedCount];
        }
    }

    private QueueState cellQueue(int queueIndex) {
        QueueState q = dataQueue(queueIndex);
        if (!q.cells) {
            throw new IllegalArgumentException("queue " + queueIndex + " is not a packed ring with entry copies");
        }
        return q;
    }

    /**
     * Phase 1 of a completion batch (spec §6.2): writes the batch's slot list and commits it with one release store of
     * the batch word. Call it before the used elements become visible to the guest, then publish them, then call
     * {@link #completionsEnd}. A crash before the guest sees the new used index rolls the batch back (its requests run
     * again); after, forward.
     *
     * @param queueIndex a started queue without a batch in progress
     * @param slots the completed requests' slots, in any order (out-of-order completion is normal); for a packed ring
     *     with entry copies their buffer ids
     * @param count how many entries of {@code slots} to take, in [1, slot count]
     * @param newUsedIdx the used index the guest will see after the batch (split: u16)
     * @throws IllegalArgumentException if count, a slot or the used index is out of range, or a slot appears twice
     * @throws IllegalStateException if the queue is not started, a batch is in progress, or a slot is not in flight
     */
    public void completionsBegin(int queueIndex, int[] slots, int count, int newUsedIdx) {
        QueueState q = dataQueue(queueIndex);
        if (count < 1 || count > q.slotCount || count > slots.length) {
            throw new IllegalArgumentException("queue " + queueIndex + ": batch count " + count + " out of [1, "
                    + Math.min(q.slotCount, slots.length) + "]");
        }
        checkBatch(q, queueIndex, slots, count);
        checkRingIndex(q, queueIndex, "used index", newUsedIdx);
        dropStaged(q);
        int listed = 0;
        for (int i = 0; i < count; i++) {
            if (q.cells) {
                // spec §6.5: the batch lists every cell of each completed chain
                for (int c = q.chainFirstCell[slots[i]]; c >= 0; c = q.cellNext[c]) {
                    journal.set(SHORT_LE, q.offset + batchListOffset + 2L * listed++, (short) c);
                    observer.afterStore("batch.slot");
                }
            } else {
                journal.set(SHORT_LE, q.offset + batchListOffset + 2L * listed++, (short) slots[i]);
                observer.afterStore("batch.slot");
            }
        }
        putInt(q.offset + QUEUE_BATCH_COUNT_OFFSET, listed, "batch.count");
        int batchSeq = q.appliedBatchSeq + 1;
        // release: the slot list and count are visible before the batch word that makes the batch pending
        JournalDescriptor.wordRelease(
                journal, q.offset + QUEUE_BATCH_WORD_OFFSET, JournalDescriptor.batchWord(batchSeq, newUsedIdx));
        observer.afterStore("batch.commit");
        System.arraycopy(slots, 0, q.pendingSlots, 0, count);
        q.pendingCount = count;
        q.pendingNewUsedIdx = newUsedIdx;
        q.pending = true;
    }

    /**
     * Phase 2 of a completion batch, after the guest can see the new used index: frees the batch's slots and commits
     * the new used index with one release store of the used word.
     *
     * @param queueIndex the queue whose batch {@link #completionsBegin} started
     * @throws IllegalStateException if no batch is in progress
     */
    public void completionsEnd(int queueIndex) {
        QueueState q = dataQueue(queueIndex);
        if (!q.pending) {
            throw new IllegalStateException("queue " + queueIndex + ": no completion batch in progress");
        }
        for (int i = 0; i < q.pendingCount; i++) {
            if (q.cells) {
                for (int c = q.chainFirstCell[q.pendingSlots[i]]; c >= 0; c = q.cellNext[c]) {
                    putLong(slotSeqOffset(q, c), 0L, "batch.slotFree");
                }
            } else {
                putLong(slotSeqOffset(q, q.pendingSlots[i]), 0L, "batch.slotFree");
            }
        }
        int batchSeq = q.appliedBatchSeq + 1;
        // release: the freed slots are visible before the used word that applies the batch
        JournalDescriptor.wordRelease(
                journal, q.offset + QUEUE_USED_WORD_OFFSET, JournalDescriptor.usedWord(batchSeq, q.pendingNewUsedIdx));
        observer.afterStore("used.commit");
        for (int i = 0; i < q.pendingCount; i++) {
            int id = q.pendingSlots[i];
            q.inflight[id] = false;
            if (q.cells) {
                for (int c = q.chainFirstCell[id]; c >= 0; c = q.cellNext[c]) {
                    q.freeCells[q.freeCellCount++] = c;
                }
                q.chainFirstCell[id] = -1;
            }
        }
        q.inflightCount -= q.pendingCount;
        q.appliedBatchSeq = batchSeq;
        q.usedIdx = q.pendingNewUsedIdx;
        q.pending = false;
    }

    /**
     * A whole completion batch: {@link #completionsBegin}, then {@code publisher} makes the used elements visible to
     * the guest, then {@link #completionsEnd}.
     *
     * @param queueIndex a started queue without a batch in progress
     * @param slots the completed requests' slots, in any order
     * @param count how many entries of {@code slots} to take
     * @param newUsedIdx the used index the publisher makes visible
     * @param publisher stores the used index into guest memory (allocated once by the caller)
     */
    public void requestsCompleted(int queueIndex, int[] slots, int count, int newUsedIdx, UsedPublisher publisher) {
        completionsBegin(queueIndex, slots, count, newUsedIdx);
        publisher.publishUsed(queueIndex);
        completionsEnd(queueIndex);
    }

    /**
     * @param queueIndex a queue
     * @return whether it is started
     */
    public boolean isStarted(int queueIndex) {
        checkQueueIndex(queueIndex);
        return queues[queueIndex].started;
    }

    /**
     * @param queueIndex a started queue
     * @return its last avail index as last committed
     */
    public int lastAvailIdx(int queueIndex) {
        return dataQueue(queueIndex).lastAvailIdx;
    }

    /**
     * @param queueIndex a started queue
     * @return its used index as last committed
     */
    public int usedIdx(int queueIndex) {
        return dataQueue(queueIndex).usedIdx;
    }

    /**
     * @param queueIndex a started queue
     * @return how many requests are in flight
     */
    public int inflightCount(int queueIndex) {
        return dataQueue(queueIndex).inflightCount;
    }

    /**
     * @param queueIndex a started queue
     * @param slot a slot
     * @return whether the slot's request is in flight
     */
    public boolean isInflight(int queueIndex, int slot) {
        QueueState q = dataQueue(queueIndex);
        checkSlot(q, queueIndex, slot);
        return q.inflight[slot];
    }

    /**
     * The ring descriptor copies of a packed chain in flight (spec §6.5), in chain order: what a replacement slave
     * resubmits or takes over instead of re-reading ring positions the device may have overwritten with used
     * descriptors. Control plane (allocates); not concurrently with the queue's data path.
     *
     * @param queueIndex a started packed queue with entry copies
     * @param chainId a buffer id in flight
     * @return the chain's copies
     * @throws IllegalArgumentException if the queue keeps no packed copies or the id is out of range
     * @throws IllegalStateException if the id is not in flight
     */
    public List<InflightDesc> packedChain(int queueIndex, int chainId) {
        QueueState q = cellQueue(queueIndex);
        checkSlot(q, queueIndex, chainId);
        if (!q.inflight[chainId]) {
            throw new IllegalStateException("queue " + queueIndex + ": buffer id " + chainId + " is not in flight");
        }
        List<InflightDesc> out = new ArrayList<>();
        for (int c = q.chainFirstCell[chainId]; c >= 0; c = q.cellNext[c]) {
            long e = slotSeqOffset(q, c) + SLOT_ENTRY_OFFSET + CELL_DESC_OFFSET;
            out.add(new InflightDesc(
                    journal.get(LONG_LE, e),
                    journal.get(INT_LE, e + 8),
                    journal.get(SHORT_LE, e + 12) & 0xFFFF,
                    journal.get(SHORT_LE, e + 14) & 0xFFFF));
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------------------------

    private QueueState dataQueue(int queueIndex) {
        checkQueueIndex(queueIndex);
        QueueState q = queues[queueIndex];
        if (!q.started) {
            throw new IllegalStateException("queue " + queueIndex + " is not started");
        }
        return q;
    }

    private static void checkNoBatch(QueueState q, int queueIndex) {
        // spec §6.2: nothing else is committed on the queue between the two phases of a batch
        if (q.pending) {
            throw new IllegalStateException("queue " + queueIndex + ": a completion batch is in progress");
        }
    }

    private void checkBatch(QueueState q, int queueIndex, int[] slots, int count) {
        checkNoBatch(q, queueIndex);
        int i = 0;
        try {
            for (; i < count; i++) {
                int s = slots[i];
                checkSlot(q, queueIndex, s);
                if (!q.inflight[s]) {
                    throw new IllegalStateException("queue " + queueIndex + ": slot " + s + " is not in flight");
                }
                if (q.mark[s]) {
                    throw new IllegalArgumentException("queue " + queueIndex + ": slot " + s + " twice in one batch");
                }
                q.mark[s] = true;
            }
        } finally {
            for (int k = 0; k < i; k++) {
                q.mark[slots[k]] = false;
            }
        }
    }

    private static void checkRingIndex(QueueState q, int queueIndex, String what, int idx) {
        // recovery refuses what it cannot interpret (spec §7.2): refuse it here, before it is stored
        if ((idx & ~0xFFFF) != 0 || q.packed && (idx & 0x7FFF) >= q.size) {
            throw new IllegalArgumentException("queue " + queueIndex + ": " + what + " 0x" + Integer.toHexString(idx)
                    + " invalid for a " + (q.packed ? "packed" : "split") + " ring of size " + q.size);
        }
    }

    private static void checkSlot(QueueState q, int queueIndex, int slot) {
        if (slot < 0 || slot >= q.slotCount) {
            throw new IllegalArgumentException(
                    "queue " + queueIndex + ": slot " + slot + " out of [0, " + q.slotCount + ")");
        }
    }

    private void checkQueueIndex(int queueIndex) {
        if (queueIndex < 0 || queueIndex >= maxQueues) {
            throw new IllegalArgumentException("queue index " + queueIndex + " out of [0, " + maxQueues + ")");
        }
    }

    private static void checkIndex(int queueIndex, String what, int idx, int size, boolean packed) {
        boolean ok = packed ? (idx & ~0xFFFF) == 0 && (idx & 0x7FFF) < size : (idx & ~0xFFFF) == 0;
        if (!ok) {
            throw new IllegalArgumentException("queue " + queueIndex + ": " + what + " 0x" + Integer.toHexString(idx)
                    + " invalid for a " + (packed ? "packed" : "split") + " ring of size " + size);
        }
    }

    static void checkMemoryTable(List<JournalMemoryRegion> regions) {
        if (regions.size() > MAX_MEM_REGIONS) {
            throw new IllegalArgumentException(
                    regions.size() + " memory regions, at most " + MAX_MEM_REGIONS + " allowed");
        }
        for (int i = 0; i < regions.size(); i++) {
            JournalMemoryRegion a = regions.get(i);
            for (int k = i + 1; k < regions.size(); k++) {
                JournalMemoryRegion b = regions.get(k);
                if (a.regionId() == b.regionId()) {
                    throw new IllegalArgumentException(
                            "memory regions " + i + " and " + k + " share id " + a.regionId());
                }
                boolean disjoint = Long.compareUnsigned(a.lastGuestPhysAddr(), b.guestPhysAddr()) < 0
                        || Long.compareUnsigned(b.lastGuestPhysAddr(), a.guestPhysAddr()) < 0;
                if (!disjoint) {
                    throw new IllegalArgumentException(
                            "memory regions " + i + " and " + k + " overlap: " + a + ", " + b);
                }
            }
        }
    }

    private int configuredFlags(long vringOffset, int queueIndex) {
        int flags = journal.get(INT_LE, vringOffset + VRING_FLAGS_OFFSET);
        if ((flags & VRING_CONFIGURED_MASK) == 0) {
            throw new IllegalStateException("queue " + queueIndex + " is not configured");
        }
        return flags;
    }

    private int sessionFlags(long configOffset) {
        return journal.get(INT_LE, configOffset + SESSION_FLAGS_OFFSET);
    }

    private long activeConfigOffset() {
        return JournalDescriptor.configCopyOffset(maxQueues, (int) (generation & 1));
    }

    /** Spec §6.3 step 1: the inactive copy becomes a copy of the active one, to be changed and committed. */
    private long beginConfig() {
        long inactive = JournalDescriptor.configCopyOffset(maxQueues, (int) ((generation + 1) & 1));
        MemorySegment.copy(journal, activeConfigOffset(), journal, inactive, configLength);
        observer.afterStore("config.copy");
        return inactive;
    }

    /** Spec §6.3 step 3: one release store makes the changed copy the active one. */
    private void commitConfig() {
        long next = generation + 1;
        // release: the whole inactive copy is visible before the generation that activates it
        JournalDescriptor.configGenerationRelease(journal, next);
        generation = next;
        observer.afterStore("config.commit");
    }

    private long slotSeqOffset(QueueState q, int slot) {
        return q.offset + JournalDescriptor.slotOffset(entryLength, slot) + SLOT_SEQ_OFFSET;
    }

    private void putLong(long offset, long value, String field) {
        journal.set(LONG_LE, offset, value);
        observer.afterStore(field);
    }

    private void putInt(long offset, int value, String field) {
        journal.set(INT_LE, offset, value);
        observer.afterStore(field);
    }

    @Override
    public String toString() {
        return "SessionJournal[maxQueues=" + maxQueues + ", maxSlots=" + maxSlots + ", entryLength=" + entryLength
                + ", generation=" + generation + ", journal=0x" + Long.toHexString(journal.address()) + "]";
    }
}
