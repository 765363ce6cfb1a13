package io.vhostd.slave;

import io.vhostd.journal.InflightRequest;
import io.vhostd.journal.JournalConfig;
import io.vhostd.journal.JournalException;
import io.vhostd.journal.JournalMemoryRegion;
import io.vhostd.journal.JournalRecovery;
import io.vhostd.journal.QueueConfig;
import io.vhostd.journal.RecoveredQueue;
import io.vhostd.journal.RecoveredSession;
import io.vhostd.journal.VringConfig;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.backend.VhostUserBackend;
import io.vhostd.vhost.proto.VhostUserMemoryRegion;
import io.vhostd.vhost.proto.VhostUserVringAddr;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What a replacement slave continues a dead slave's session from (issue #4, DESIGN §3): the journal's recovered state
 * (journal.md §7) turned into a {@link VhostUserBackend.RestoredSession} over the fds the master held, and per started
 * queue the heads to resubmit, oldest fetch first.
 *
 * @param recovered what recovery returned ({@link io.vhostd.journal.SessionJournal#open} continues from it)
 * @param state the back-end's restored state; its fds are taken from the map given to {@link #recover}
 * @param replayHeads queue index → head indexes in flight, oldest fetch first (an entry for every started queue)
 * @param unusedFds fds of the adoption that the restored session does not use (the caller closes them)
 */
record Adoption(
        RecoveredSession recovered,
        VhostUserBackend.RestoredSession state,
        Map<Integer, int[]> replayHeads,
        List<Integer> unusedFds) {

    private static final ValueLayout.OfShort LE_U16 =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Offset of {@code idx} in a split ring's used ring (virtio 1.2 §2.7.8: flags u16, idx u16). */
    private static final long VIRTQ_USED_IDX_OFFSET = 2;

    /** Per started queue: the recovered avail and used indexes and the requests in flight, for the log. */
    String describe() {
        StringBuilder sb = new StringBuilder();
        for (RecoveredQueue q : recovered.queues()) {
            sb.append(sb.isEmpty() ? "" : ", ")
                    .append("queue ")
                    .append(q.queueIndex())
                    .append(": last avail ")
                    .append(q.lastAvailIdx())
                    .append(", used ")
                    .append(q.usedIdx())
                    .append(", in flight ")
                    .append(q.inflight().size())
                    .append(", batch ")
                    .append(q.interruptedBatch());
        }
        return sb.toString();
    }

    /** Closes the fds of {@link #state} (the session will not be restored). */
    void closeSessionFds() {
        if (state.inflightFd() >= 0) {
            Unistd.close(state.inflightFd());
        }
        for (VhostUserBackend.RestoredRegion r : state.regions()) {
            Unistd.close(r.fd());
        }
        for (VhostUserBackend.RestoredVring v : state.vrings()) {
            for (int fd : new int[] {v.kickFd(), v.callFd(), v.errFd()}) {
                if (fd >= 0) {
                    Unistd.close(fd);
                }
            }
        }
    }

    /** Requests resubmitted over all queues. */
    int replayCount() {
        int n = 0;
        for (int[] heads : replayHeads.values()) {
            n += heads.length;
        }
        return n;
    }

    /**
     * Recovers the journal and builds the restored session.
     *
     * @param journal the mapped session journal
     * @param fds "what/index" → fd from the master's custody (mem by region id, kick/call/err by queue); the fds the
     *     session uses are removed from the map and belong to the result
     * @throws JournalException if the journal does not recover
     * @throws IllegalStateException if the session cannot be continued here (no negotiated session, a packed ring
     *     without descriptor copies, a region fd or ring missing)
     */
    static Adoption recover(MemorySegment journal, Map<String, Integer> fds) {
        JournalConfig config = JournalRecovery.readConfig(journal);
        if (!config.featuresSet() || !config.memoryTableSet()) {
            throw new IllegalStateException("the journal holds no negotiated session");
        }
        for (JournalMemoryRegion r : config.memoryTable()) {
            if (!fds.containsKey("mem/" + r.regionId())) {
                throw new IllegalStateException("no fd for guest memory region " + r.regionId());
            }
        }
        RecoveredSession recovered;
        try (Arena arena = Arena.ofConfined()) {
            // guest memory, read-only, only to answer used->idx for an interrupted completion batch (journal.md §7.3):
            // mapped on the first such queue, not in every adoption (a map and an unmap of all of guest memory cost
            // about 0.3 ms of a handover's pause at p50 on a busy host, issue #4)
            List<MemorySegment> mapped = new ArrayList<>();
            recovered = JournalRecovery.recover(journal, (queueIndex, vring, committedUsedIdx, pendingUsedIdx) -> {
                if (mapped.isEmpty()) {
                    mapGuestMemory(config, fds, arena, mapped);
                }
                if (vring.packed()) {
                    return packedGuestUsedIndex(config, mapped, queueIndex, vring, committedUsedIdx, pendingUsedIdx);
                }
                long gpa = vring.usedGpa() + VIRTQ_USED_IDX_OFFSET;
                for (int i = 0; i < mapped.size(); i++) {
                    JournalMemoryRegion r = config.memoryTable().get(i);
                    if (r.contains(gpa, 2)) {
                        return mapped.get(i).get(LE_U16, gpa - r.guestPhysAddr()) & 0xFFFF;
                    }
                }
                throw new JournalException("queue " + queueIndex + ": used ring outside guest memory");
            });
        }
        List<VhostUserBackend.RestoredRegion> regions = new ArrayList<>();
        for (JournalMemoryRegion r : config.memoryTable()) {
            regions.add(new VhostUserBackend.RestoredRegion(
                    new VhostUserMemoryRegion(r.guestPhysAddr(), r.memorySize(), r.userAddr(), r.mmapOffset()),
                    r.regionId(),
                    fds.remove("mem/" + r.regionId())));
        }
        List<VhostUserBackend.RestoredVring> vrings = new ArrayList<>();
        Map<Integer, int[]> replay = new HashMap<>();
        for (QueueConfig q : config.queues()) {
            if (!q.started()) {
                continue;
            }
            VringConfig v = q.vring();
            if (v.packed() && !v.entryCopies()) {
                throw new IllegalStateException("queue " + q.queueIndex()
                        + ": a packed ring journaled without descriptor copies (journal.md §6.5)");
            }
            RecoveredQueue rq = recovered.queue(q.queueIndex());
            int[] heads = new int[rq.inflight().size()];
            for (int i = 0; i < heads.length; i++) {
                InflightRequest request = rq.inflight().get(i);
                heads[i] = request.slot();
            }
            replay.put(q.queueIndex(), heads);
            VhostUserVringAddr addr = new VhostUserVringAddr(
                    q.queueIndex(),
                    v.addrFlags(),
                    userAddr(config, v.descGpa()),
                    userAddr(config, v.usedGpa()),
                    userAddr(config, v.availGpa()),
                    v.logGuestAddr());
            vrings.add(new VhostUserBackend.RestoredVring(
                    q.queueIndex(),
                    v.size(),
                    addr,
                    // packed: vhost-user.rst "Vring descriptor indices for packed virtqueues", both positions
                    v.packed() ? rq.lastAvailIdx() | rq.usedIdx() << 16 : rq.lastAvailIdx(),
                    q.enabled(),
                    take(fds, "kick/" + q.queueIndex()),
                    take(fds, "call/" + q.queueIndex()),
                    take(fds, "err/" + q.queueIndex())));
        }
        // the vhost-user inflight region (INFLIGHT_SHMFD) the dead slave wrote: continued, not recovered from QEMU
        int inflightFd = take(fds, "inflight/0");
        VhostUserBackend.RestoredSession state = new VhostUserBackend.RestoredSession(
                config.features(), config.protocolFeatures(), regions, vrings, inflightFd);
        List<Integer> unused = new ArrayList<>(fds.values());
        fds.clear();
        return new Adoption(recovered, state, replay, unused);
    }

    /** Maps every region of the memory table read-only into {@code arena}, in table order, into {@code mapped}. */
    private static void mapGuestMemory(
            JournalConfig config, Map<String, Integer> fds, Arena arena, List<MemorySegment> mapped) {
        for (JournalMemoryRegion r : config.memoryTable()) {
            MemorySegment whole = Mman.mmap(
                    r.mmapOffset() + r.memorySize(),
                    Mman.PROT_READ,
                    Mman.MAP_SHARED,
                    fds.get("mem/" + r.regionId()),
                    0,
                    arena);
            mapped.add(whole.asSlice(r.mmapOffset(), r.memorySize()));
        }
    }

    /** Offset of {@code flags} in a packed ring descriptor (virtio 1.2 §2.8.13: addr u64, len u32, id u16, flags u16). */
    private static final long PVIRTQ_DESC_FLAGS_OFFSET = 14;

    private static final int VIRTQ_DESC_F_AVAIL = 1 << 7;
    private static final int VIRTQ_DESC_F_USED = 1 << 15;

    /**
     * journal.md §7.3 for a packed ring: the interrupted batch is visible iff the descriptor at the committed used
     * position is no longer available in the lap the batch was published in. With W the committed used wrap counter,
     * (AVAIL, USED) = (W, !W): still the driver's available descriptor, not published; (W, W): our first used
     * descriptor; (!W, W): the driver saw it used and made the position available again in the next lap. Anything else
     * (a used descriptor of the next lap) cannot follow an unpublished batch: refused.
     */
    private static int packedGuestUsedIndex(
            JournalConfig config,
            List<MemorySegment> mapped,
            int queueIndex,
            VringConfig vring,
            int committedUsedIdx,
            int pendingUsedIdx) {
        long gpa = vring.descGpa() + 16L * (committedUsedIdx & 0x7FFF) + PVIRTQ_DESC_FLAGS_OFFSET;
        for (int i = 0; i < mapped.size(); i++) {
            JournalMemoryRegion r = config.memoryTable().get(i);
            if (r.contains(gpa, 2)) {
                int flags = mapped.get(i).get(LE_U16, gpa - r.guestPhysAddr()) & 0xFFFF;
                boolean w = (committedUsedIdx & 0x8000) != 0;
                boolean avail = (flags & VIRTQ_DESC_F_AVAIL) != 0;
                boolean used = (flags & VIRTQ_DESC_F_USED) != 0;
                if (avail == w && used != w) {
                    return committedUsedIdx;
                }
                if (used == w) {
                    return pendingUsedIdx;
                }
                throw new JournalException("queue " + queueIndex + ": packed descriptor at used position "
                        + (committedUsedIdx & 0x7FFF) + " has flags 0x" + Integer.toHexString(flags)
                        + ", neither available nor used in the committed lap");
            }
        }
        throw new JournalException("queue " + queueIndex + ": descriptor ring outside guest memory");
    }

    private static int take(Map<String, Integer> fds, String key) {
        Integer fd = fds.remove(key);
        return fd == null ? -1 : fd;
    }

    /** Guest physical → front-end virtual address through the memory table (the ring lies inside one region). */
    private static long userAddr(JournalConfig config, long gpa) {
        for (JournalMemoryRegion r : config.memoryTable()) {
            if (r.contains(gpa, 1)) {
                return gpa - r.guestPhysAddr() + r.userAddr();
            }
        }
        throw new IllegalStateException("ring at GPA 0x" + Long.toHexString(gpa) + " outside guest memory");
    }
}
