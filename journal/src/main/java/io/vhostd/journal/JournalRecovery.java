package io.vhostd.journal;

import static io.vhostd.journal.JournalDescriptor.CACHE_MODE_WRITEBACK;
import static io.vhostd.journal.JournalDescriptor.CACHE_MODE_WRITE_THROUGH;
import static io.vhostd.journal.JournalDescriptor.CELL_DESC_LENGTH;
import static io.vhostd.journal.JournalDescriptor.CELL_DESC_OFFSET;
import static io.vhostd.journal.JournalDescriptor.CELL_ID_OFFSET;
import static io.vhostd.journal.JournalDescriptor.CELL_POSITION_OFFSET;
import static io.vhostd.journal.JournalDescriptor.ENTRY_COPY_LENGTH;
import static io.vhostd.journal.JournalDescriptor.INT_LE;
import static io.vhostd.journal.JournalDescriptor.LONG_LE;
import static io.vhostd.journal.JournalDescriptor.MAX_MEM_REGIONS;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_GUEST_PHYS_ADDR_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_ID_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_MEMORY_SIZE_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_MMAP_OFFSET_OFFSET;
import static io.vhostd.journal.JournalDescriptor.MEM_REGION_USER_ADDR_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_BATCH_COUNT_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_BATCH_WORD_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_FETCH_WORD_OFFSET;
import static io.vhostd.journal.JournalDescriptor.QUEUE_USED_WORD_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SEQ_MASK;
import static io.vhostd.journal.JournalDescriptor.SEQ_WINDOW;
import static io.vhostd.journal.JournalDescriptor.SESSION_CACHE_MODE_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_FEATURES_OFFSET;
import static io.vhostd.journal.JournalDescriptor.SESSION_FEATURES_SET_MASK;
import static io.vhostd.journal.JournalDescriptor.SESSION_FLAGS_DEFINED_MASK;
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
import static io.vhostd.journal.JournalDescriptor.VRING_FLAGS_DEFINED_MASK;
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

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * Reads a session journal that a dead slave left behind (spec §7): validates everything (the region came from a dead
 * peer and is untrusted; a malformed region is refused with a {@link JournalException} naming the queue, field, value
 * found and value expected, never with a loop or an out-of-bounds access), resolves the updates the death interrupted,
 * and returns the committed configuration and, per started queue, the requests in flight in fetch order and the
 * indexes to resume at.
 *
 * <p>Recovery only reads the region. {@link SessionJournal#open} then applies the resolution (spec §7.5). Control-plane
 * code, not a data path: it allocates freely.
 */
public final class JournalRecovery {

    private JournalRecovery() {}

    /**
     * Reads and validates the committed configuration only: what the caller needs to map guest memory before it can
     * answer {@link GuestUsedIndex} in {@link #recover}.
     *
     * @param journal the mapped journal region
     * @return the committed configuration
     * @throws JournalException if the region or its configuration is invalid
     */
    public static JournalConfig readConfig(MemorySegment journal) {
        JournalDescriptor.checkVersion(journal);
        JournalDescriptor.checkLength(journal);
        return readConfig(journal, JournalDescriptor.configGenerationAcquire(journal));
    }

    /**
     * Recovers a session (spec §7).
     *
     * @param journal the mapped journal region; nobody writes it meanwhile
     * @param guestUsedIndex reads the guest's used index of a queue whose completion batch was interrupted
     * @return the validated, resolved state
     * @throws JournalException if the region is of another major version, not ready, malformed, or inconsistent with
     *     the guest's used index
     */
    public static RecoveredSession recover(MemorySegment journal, GuestUsedIndex guestUsedIndex) {
        Objects.requireNonNull(guestUsedIndex, "guestUsedIndex");
        JournalDescriptor.checkVersion(journal);
        JournalDescriptor.checkLength(journal);
        // acquire: the config copy the generation names is visible
        long generation = JournalDescriptor.configGenerationAcquire(journal);
        JournalConfig config = readConfig(journal, generation);
        List<RecoveredQueue> queues = new ArrayList<>();
        for (QueueConfig qc : config.queues()) {
            if (qc.started()) {
                queues.add(recoverQueue(journal, qc, guestUsedIndex));
            }
        }
        return new RecoveredSession(config, queues, generation);
    }

    private static JournalConfig readConfig(MemorySegment journal, long generation) {
        int maxQueues = JournalDescriptor.maxQueues(journal);
        int maxSlots = JournalDescriptor.maxSlots(journal);
        int entryLength = JournalDescriptor.entryLength(journal);
        long c = JournalDescriptor.configCopyOffset(maxQueues, (int) (generation & 1));
        int sessionFlags = journal.get(INT_LE, c + SESSION_FLAGS_OFFSET);
        if ((sessionFlags & ~SESSION_FLAGS_DEFINED_MASK) != 0) {
            throw new JournalException("journal config: session flags 0x" + Integer.toHexString(sessionFlags)
                    + " has bits version " + JournalDescriptor.MAJOR_VERSION + " does not define");
        }
        boolean featuresSet = (sessionFlags & SESSION_FEATURES_SET_MASK) != 0;
        boolean protocolFeaturesSet = (sessionFlags & SESSION_PROTOCOL_FEATURES_SET_MASK) != 0;
        boolean memTableSet = (sessionFlags & SESSION_MEM_TABLE_SET_MASK) != 0;
        long features = journal.get(LONG_LE, c + SESSION_FEATURES_OFFSET);
        long protocolFeatures = journal.get(LONG_LE, c + SESSION_PROTOCOL_FEATURES_OFFSET);
        // minor-version field (§11): a value this reader does not know is ignored, as if nothing were recorded
        int cacheMode = journal.get(INT_LE, c + SESSION_CACHE_MODE_OFFSET);
        Boolean writeback = cacheMode == CACHE_MODE_WRITEBACK
                ? Boolean.TRUE
                : cacheMode == CACHE_MODE_WRITE_THROUGH ? Boolean.FALSE : null;
        if (!featuresSet && features != 0 || !protocolFeaturesSet && protocolFeatures != 0) {
            throw new JournalException("journal config: features present without their 'set' flag");
        }
        int regionCount = journal.get(INT_LE, c + SESSION_MEM_REGION_COUNT_OFFSET);
        if (regionCount < 0 || regionCount > MAX_MEM_REGIONS || !memTableSet && regionCount != 0) {
            throw new JournalException("journal config: memory region count " + Integer.toUnsignedString(regionCount)
                    + " invalid, expected 0.." + MAX_MEM_REGIONS + (memTableSet ? "" : " (0: no memory table set)"));
        }
        List<JournalMemoryRegion> regions = new ArrayList<>(regionCount);
        for (int i = 0; i < regionCount; i++) {
            long r = c + JournalDescriptor.memRegionOffset(i);
            try {
                regions.add(new JournalMemoryRegion(
                        journal.get(LONG_LE, r + MEM_REGION_GUEST_PHYS_ADDR_OFFSET),
                        journal.get(LONG_LE, r + MEM_REGION_MEMORY_SIZE_OFFSET),
                        journal.get(LONG_LE, r + MEM_REGION_USER_ADDR_OFFSET),
                        journal.get(LONG_LE, r + MEM_REGION_MMAP_OFFSET_OFFSET),
                        journal.get(INT_LE, r + MEM_REGION_ID_OFFSET)));
            } catch (IllegalArgumentException e) {
                throw new JournalException("journal config: memory region " + i + ": " + e.getMessage());
            }
        }
        try {
            SessionJournal.checkMemoryTable(regions);
        } catch (IllegalArgumentException e) {
            throw new JournalException("journal config: " + e.getMessage());
        }
        List<QueueConfig> queues = new ArrayList<>();
        for (int q = 0; q < maxQueues; q++) {
            long v = c + JournalDescriptor.vringConfigOffset(q);
            int flags = journal.get(INT_LE, v + VRING_FLAGS_OFFSET);
            if ((flags & ~VRING_FLAGS_DEFINED_MASK) != 0) {
                throw new JournalException("journal config: queue " + q + ": flags 0x" + Integer.toHexString(flags)
                        + " has undefined bits");
            }
            if ((flags & VRING_CONFIGURED_MASK) == 0) {
                if (flags != 0) {
                    throw new JournalException("journal config: queue " + q + ": flags 0x" + Integer.toHexString(flags)
                            + " without the configured bit");
                }
                continue;
            }
            queues.add(readQueueConfig(journal, v, q, flags, maxSlots, entryLength, memTableSet ? regions : null));
        }
        return new JournalConfig(
                featuresSet, features, protocolFeaturesSet, protocolFeatures, memTableSet, regions, queues, writeback);
    }

    private static QueueConfig readQueueConfig(
            MemorySegment journal,
            long v,
            int q,
            int flags,
            int maxSlots,
            int entryLength,
            List<JournalMemoryRegion> memoryTable) {
        boolean packed = (flags & VRING_PACKED_MASK) != 0;
        boolean entryCopies = (flags & VRING_ENTRY_COPIES_MASK) != 0;
        boolean started = (flags & VRING_STARTED_MASK) != 0;
        VringConfig vring;
        try {
            vring = new VringConfig(
                    journal.get(INT_LE, v + VRING_SIZE_OFFSET),
                    packed,
                    journal.get(LONG_LE, v + VRING_DESC_GPA_OFFSET),
                    journal.get(LONG_LE, v + VRING_AVAIL_GPA_OFFSET),
                    journal.get(LONG_LE, v + VRING_USED_GPA_OFFSET),
                    journal.get(LONG_LE, v + VRING_LOG_GUEST_ADDR_OFFSET),
                    journal.get(INT_LE, v + VRING_ADDR_FLAGS_OFFSET),
                    journal.get(INT_LE, v + VRING_SLOT_COUNT_OFFSET),
                    entryCopies);
        } catch (IllegalArgumentException e) {
            throw new JournalException("journal config: queue " + q + ": " + e.getMessage());
        }
        if (vring.slotCount() > maxSlots) {
            throw new JournalException("journal config: queue " + q + ": slot count " + vring.slotCount()
                    + " exceeds max slots " + maxSlots);
        }
        if (entryCopies && entryLength != ENTRY_COPY_LENGTH) {
            throw new JournalException("journal config: queue " + q + ": entry copies in a journal without them");
        }
        if (packed && entryCopies && vring.slotCount() != vring.size()) {
            throw new JournalException("journal config: queue " + q + ": packed ring with entry copies: slot count "
                    + vring.slotCount() + ", expected the ring size " + vring.size() + " (one cell per descriptor)");
        }
        int startAvail = journal.get(INT_LE, v + VRING_START_AVAIL_IDX_OFFSET);
        int startUsed = journal.get(INT_LE, v + VRING_START_USED_IDX_OFFSET);
        long startFetchSeq = journal.get(LONG_LE, v + VRING_START_FETCH_SEQ_OFFSET);
        int startBatchSeq = journal.get(INT_LE, v + VRING_START_BATCH_SEQ_OFFSET);
        if (started) {
            checkIndex(q, "start last avail index", startAvail, vring);
            checkIndex(q, "start used index", startUsed, vring);
            if ((startFetchSeq & ~SEQ_MASK) != 0) {
                throw new JournalException("journal config: queue " + q + ": start fetch sequence 0x"
                        + Long.toHexString(startFetchSeq) + " wider than 48 bits");
            }
            if (memoryTable != null) {
                checkRing(q, "descriptor table", vring.descGpa(), vring.descLengthBytes(), memoryTable);
                checkRing(
                        q,
                        vring.packed() ? "driver area" : "available ring",
                        vring.availGpa(),
                        vring.availLengthBytes(),
                        memoryTable);
                checkRing(
                        q,
                        vring.packed() ? "device area" : "used ring",
                        vring.usedGpa(),
                        vring.usedLengthBytes(),
                        memoryTable);
            }
        }
        return new QueueConfig(
                q,
                vring,
                started,
                (flags & VRING_ENABLED_MASK) != 0,
                startAvail,
                startUsed,
                startFetchSeq,
                startBatchSeq);
    }

    private static void checkIndex(int q, String what, int idx, VringConfig vring) {
        boolean ok = (idx & ~0xFFFF) == 0 && (!vring.packed() || (idx & 0x7FFF) < vring.size());
        if (!ok) {
            throw new JournalException("journal: queue " + q + ": " + what + " 0x" + Integer.toHexString(idx)
                    + " invalid for a " + (vring.packed() ? "packed" : "split") + " ring of size " + vring.size());
        }
    }

    private static void checkRing(int q, String what, long gpa, long length, List<JournalMemoryRegion> table) {
        for (JournalMemoryRegion r : table) {
            if (r.contains(gpa, length)) {
                return;
            }
        }
        throw new JournalException("journal config: queue " + q + ": " + what + " [0x" + Long.toHexString(gpa) + ", +"
                + length + ") is not inside one memory region");
    }

    private record Slot(int slot, long seq, long age) {}

    private static RecoveredQueue recoverQueue(MemorySegment journal, QueueConfig qc, GuestUsedIndex guestUsedIndex) {
        int q = qc.queueIndex();
        VringConfig vring = qc.vring();
        int maxQueues = JournalDescriptor.maxQueues(journal);
        int maxSlots = JournalDescriptor.maxSlots(journal);
        int entryLength = JournalDescriptor.entryLength(journal);
        long base = JournalDescriptor.queueOffset(maxQueues, maxSlots, entryLength, q);
        // acquire: what each commit word committed is visible (the writer is dead; this orders our own reads)
        long fetchWord = JournalDescriptor.wordAcquire(journal, base + QUEUE_FETCH_WORD_OFFSET);
        long usedWord = JournalDescriptor.wordAcquire(journal, base + QUEUE_USED_WORD_OFFSET);
        long batchWord = JournalDescriptor.wordAcquire(journal, base + QUEUE_BATCH_WORD_OFFSET);

        // spec §7.2: the last avail index
        long fetchSeq = JournalDescriptor.fetchSeq(fetchWord);
        long sinceStart = JournalDescriptor.seqDistance(qc.startFetchSeq(), fetchSeq);
        if (sinceStart >= SEQ_WINDOW) {
            throw new JournalException("journal: queue " + q + ": fetch sequence " + fetchSeq
                    + " is before the queue's start sequence " + qc.startFetchSeq());
        }
        int lastAvailIdx = sinceStart == 0 ? qc.startLastAvailIdx() : JournalDescriptor.fetchLastAvailIdx(fetchWord);
        checkIndex(q, "last avail index", lastAvailIdx, vring);

        // spec §7.2: the used index and the applied batch
        int applied = JournalDescriptor.wordBatchSeq(usedWord);
        int sinceStartBatches = applied - qc.startBatchSeq();
        if (sinceStartBatches < 0) {
            throw new JournalException("journal: queue " + q + ": applied batch sequence "
                    + Integer.toUnsignedString(applied) + " is before the queue's start batch sequence "
                    + Integer.toUnsignedString(qc.startBatchSeq()));
        }
        int usedIdx = sinceStartBatches == 0 ? qc.startUsedIdx() : JournalDescriptor.wordUsedIdx(usedWord);
        checkIndex(q, "used index", usedIdx, vring);

        // spec §7.1: classify every slot; the sequence says in flight, free or torn
        int slotCount = vring.slotCount();
        // spec §6.5: a packed ring with entry copies keeps one cell per ring descriptor; a chain's cells share a
        // sequence
        boolean cells = vring.packed() && vring.entryCopies();
        byte[] state = new byte[slotCount];
        final byte free = 0;
        final byte inflight = 1;
        final byte torn = 2;
        long nextSeq = JournalDescriptor.nextSeq(fetchSeq);
        int tornSlot = -1;
        List<Slot> inflightSlots = new ArrayList<>();
        for (int s = 0; s < slotCount; s++) {
            long seq = journal.get(LONG_LE, base + JournalDescriptor.slotOffset(entryLength, s) + SLOT_SEQ_OFFSET);
            if (seq == 0) {
                state[s] = free;
                continue;
            }
            long age = JournalDescriptor.seqDistance(seq, fetchSeq);
            long afterStart = JournalDescriptor.seqDistance(qc.startFetchSeq(), seq);
            if (seq == nextSeq && (tornSlot < 0 || cells)) {
                state[s] = torn;
                tornSlot = tornSlot < 0 ? s : tornSlot;
            } else if ((seq & ~SEQ_MASK) == 0 && age < SEQ_WINDOW && afterStart != 0 && afterStart < SEQ_WINDOW) {
                state[s] = inflight;
                inflightSlots.add(new Slot(s, seq, age));
            } else {
                throw new JournalException("journal: queue " + q + ": slot " + s + " has fetch sequence " + seq
                        + ", expected 0 (free) or in (" + qc.startFetchSeq() + ", " + fetchSeq + "] (in flight) or "
                        + nextSeq + " (one torn fetch)");
            }
        }
        inflightSlots.sort(Comparator.comparingLong(Slot::age).reversed());
        for (int i = 1; i < inflightSlots.size() && !cells; i++) {
            if (inflightSlots.get(i).seq() == inflightSlots.get(i - 1).seq()) {
                throw new JournalException("journal: queue " + q + ": slots "
                        + inflightSlots.get(i - 1).slot() + " and "
                        + inflightSlots.get(i).slot() + " share fetch sequence "
                        + inflightSlots.get(i).seq());
            }
        }

        // spec §7.3: a completion batch in progress is decided by what the guest sees
        BatchOutcome outcome = BatchOutcome.NONE;
        int batchSeq = JournalDescriptor.wordBatchSeq(batchWord);
        if (batchSeq == applied + 1) {
            int newUsedIdx = JournalDescriptor.wordUsedIdx(batchWord);
            checkIndex(q, "batch used index", newUsedIdx, vring);
            if (newUsedIdx == usedIdx) {
                throw new JournalException(
                        "journal: queue " + q + ": pending batch leaves the used index at " + usedIdx);
            }
            int count = journal.get(INT_LE, base + QUEUE_BATCH_COUNT_OFFSET);
            if (count < 1 || count > slotCount) {
                throw new JournalException("journal: queue " + q + ": batch count " + Integer.toUnsignedString(count)
                        + " out of [1, " + slotCount + "]");
            }
            long list = base + JournalDescriptor.batchListOffset(maxSlots, entryLength);
            int[] batch = new int[count];
            boolean[] seen = new boolean[slotCount];
            for (int i = 0; i < count; i++) {
                int s = journal.get(SHORT_LE, list + 2L * i) & 0xFFFF;
                if (s >= slotCount || seen[s] || state[s] == torn) {
                    throw new JournalException("journal: queue " + q + ": batch entry " + i + " names slot " + s
                            + (s >= slotCount
                                    ? ", out of [0, " + slotCount + ")"
                                    : seen[s] ? ", twice" : ", whose fetch was never committed"));
                }
                seen[s] = true;
                batch[i] = s;
            }
            int guest = guestUsedIndex.read(q, vring, usedIdx, newUsedIdx);
            if (guest == newUsedIdx) {
                outcome = BatchOutcome.ROLLED_FORWARD;
                usedIdx = newUsedIdx;
                if (cells) {
                    // spec §6.5: a batch lists every cell of each chain it completes, never a part of a chain
                    Set<Long> completed = new HashSet<>();
                    inflightSlots.stream().filter(x -> seen[x.slot()]).forEach(x -> completed.add(x.seq()));
                    for (Slot x : inflightSlots) {
                        if (!seen[x.slot()] && completed.contains(x.seq())) {
                            throw new JournalException("journal: queue " + q + ": the interrupted batch lists part of"
                                    + " the chain with fetch sequence " + x.seq() + " but not its cell " + x.slot());
                        }
                    }
                }
                inflightSlots.removeIf(x -> seen[x.slot()]);
            } else if (guest == usedIdx) {
                for (int s : batch) {
                    // phase 2 frees slots only after the guest saw the batch: a free slot here lost its request
                    if (state[s] != inflight) {
                        throw new JournalException("journal: queue " + q + ": the interrupted batch was not published"
                                + " (guest used index " + guest + ") but its slot " + s + " is already free");
                    }
                }
                outcome = BatchOutcome.ROLLED_BACK;
            } else {
                throw new JournalException("journal: queue " + q + ": the guest's used index " + guest
                        + " is neither the committed " + usedIdx + " nor the interrupted batch's " + newUsedIdx);
            }
        } else if (batchSeq != applied) {
            throw new JournalException("journal: queue " + q + ": batch sequence " + Integer.toUnsignedString(batchSeq)
                    + ", expected the applied " + Integer.toUnsignedString(applied) + " or the next one");
        }

        if (cells) {
            return new RecoveredQueue(
                    q, lastAvailIdx, usedIdx, chains(journal, q, vring, base, inflightSlots), outcome, tornSlot);
        }
        List<InflightRequest> requests = new ArrayList<>(inflightSlots.size());
        for (Slot s : inflightSlots) {
            byte[] entry = new byte[vring.entryCopies() ? ENTRY_COPY_LENGTH : 0];
            if (entry.length > 0) {
                MemorySegment.copy(
                        journal,
                        ValueLayout.JAVA_BYTE,
                        base + JournalDescriptor.slotOffset(entryLength, s.slot()) + SLOT_ENTRY_OFFSET,
                        entry,
                        0,
                        entry.length);
            }
            requests.add(new InflightRequest(s.slot(), s.seq(), entry));
        }
        return new RecoveredQueue(q, lastAvailIdx, usedIdx, requests, outcome, tornSlot);
    }

    /**
     * Spec §7.6 (packed cells): the in-flight cells, oldest fetch first, grouped by sequence into chains. A chain's
     * cells hold positions 0..n-1 once each and one buffer id below the ring size; no two chains share an id. Returns
     * per chain its buffer id as the slot and its ring descriptor copies in chain order as the entry.
     */
    private static List<InflightRequest> chains(
            MemorySegment journal, int q, VringConfig vring, long base, List<Slot> inflightSlots) {
        int entryLength = JournalDescriptor.entryLength(journal);
        List<InflightRequest> requests = new ArrayList<>();
        boolean[] idSeen = new boolean[vring.size()];
        int i = 0;
        while (i < inflightSlots.size()) {
            long seq = inflightSlots.get(i).seq();
            int end = i;
            while (end < inflightSlots.size() && inflightSlots.get(end).seq() == seq) {
                end++;
            }
            int n = end - i;
            byte[] copies = new byte[n * CELL_DESC_LENGTH];
            boolean[] positionSeen = new boolean[n];
            int id = -1;
            for (int k = i; k < end; k++) {
                int cell = inflightSlots.get(k).slot();
                long e = base + JournalDescriptor.slotOffset(entryLength, cell) + SLOT_ENTRY_OFFSET;
                int position = journal.get(SHORT_LE, e + CELL_POSITION_OFFSET) & 0xFFFF;
                int cellId = journal.get(SHORT_LE, e + CELL_ID_OFFSET) & 0xFFFF;
                if (position >= n || positionSeen[position]) {
                    throw new JournalException("journal: queue " + q + ": cell " + cell + " of the chain with fetch"
                            + " sequence " + seq + " has position " + position
                            + (position >= n ? ", out of [0, " + n + ")" : ", twice"));
                }
                if (cellId >= vring.size() || (id >= 0 && cellId != id)) {
                    throw new JournalException("journal: queue " + q + ": cell " + cell + " of the chain with fetch"
                            + " sequence " + seq + " names buffer id " + cellId
                            + (cellId >= vring.size()
                                    ? ", out of [0, " + vring.size() + ")"
                                    : ", the chain's other cells " + id));
                }
                positionSeen[position] = true;
                id = cellId;
                MemorySegment.copy(
                        journal,
                        ValueLayout.JAVA_BYTE,
                        e + CELL_DESC_OFFSET,
                        copies,
                        position * CELL_DESC_LENGTH,
                        CELL_DESC_LENGTH);
            }
            if (idSeen[id]) {
                throw new JournalException("journal: queue " + q + ": buffer id " + id + " in flight twice");
            }
            idSeen[id] = true;
            requests.add(new InflightRequest(id, seq, copies));
            i = end;
        }
        return requests;
    }
}
