package io.vhostd.slave;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.vhostd.journal.BatchOutcome;
import io.vhostd.journal.JournalDescriptor;
import io.vhostd.journal.JournalMemoryRegion;
import io.vhostd.journal.JournalRecovery;
import io.vhostd.journal.SessionJournal;
import io.vhostd.journal.VringConfig;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link Adoption#recover}: a replacement slave reads guest memory only for a queue whose completion batch the dead
 * writer interrupted (journal.md §7.3), so an adoption without one maps nothing (issue #4: a map and unmap of all of
 * guest memory sat in every handover's pause).
 */
@Timeout(10)
class AdoptionTest {
    private static final long GUEST_BYTES = 1 << 20;
    private static final int REGION_ID = 7;
    private static final VringConfig SPLIT8 = new VringConfig(8, false, 0x1000, 0x2000, 0x3000, 0, 0, 8, false);
    private static final long VIRTQ_USED_IDX_OFFSET = 2;

    private final Arena arena = Arena.ofConfined();
    private final List<Integer> openFds = new ArrayList<>();

    @AfterEach
    void tearDown() {
        openFds.forEach(Unistd::close);
        arena.close();
    }

    /** A journal of one started split queue: heads 3, 5 and 1 fetched; 5 and 3 in a batch begun if {@code torn}. */
    private MemorySegment journal(boolean torn) {
        MemorySegment s = arena.allocate(JournalDescriptor.lengthBytes(1, 8, 0), 64);
        JournalDescriptor.format(s, 1, 8, 0);
        SessionJournal j = SessionJournal.open(s, JournalRecovery.recover(s, (q, v, c, p) -> c));
        j.recordFeatures(1L << 32);
        j.recordMemoryTable(List.of(new JournalMemoryRegion(0, GUEST_BYTES, 0x7f0000000000L, 0, REGION_ID)));
        j.recordVring(0, SPLIT8);
        j.recordQueueStarted(0, 0, 0);
        j.requestFetched(0, 3, 1);
        j.requestFetched(0, 5, 2);
        j.requestFetched(0, 1, 3);
        if (torn) {
            // the writer dies between publishing the used entries and the batch's end record
            j.completionsBegin(0, new int[] {5, 3}, 2, 2);
        }
        return s;
    }

    private int keep(int fd) {
        openFds.add(fd);
        return fd;
    }

    /** Custody fds: the one guest memory region (the queue has no eventfds in custody). */
    private Map<String, Integer> fds(int memFd) {
        Map<String, Integer> fds = new HashMap<>();
        fds.put("mem/" + REGION_ID, memFd);
        return fds;
    }

    /** A socket cannot be mapped: a recovery that maps guest memory fails on it. */
    private int unmappableFd() {
        int[] pair = Socket.socketpair(Socket.SOCK_SEQPACKET);
        keep(pair[1]);
        return keep(pair[0]);
    }

    @Test
    void shouldNotMapGuestMemoryWhenNoBatchWasInterrupted() {
        Adoption a = Adoption.recover(journal(false), fds(unmappableFd()));
        assertEquals(BatchOutcome.NONE, a.recovered().queue(0).interruptedBatch());
        assertArrayEquals(new int[] {3, 5, 1}, a.replayHeads().get(0));
        assertEquals(1, a.state().regions().size());
    }

    @Test
    void shouldReadUsedIndexFromGuestMemoryWhenBatchWasInterrupted() {
        int memFd = keep(Memfd.memfd_create("adoption-test", Memfd.MFD_CLOEXEC));
        Unistd.ftruncate(memFd, GUEST_BYTES);
        MemorySegment idx = arena.allocate(2);
        // the guest saw the batch: used->idx is 2
        idx.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, (short) 2);
        Unistd.pwrite(memFd, idx, 2, SPLIT8.usedGpa() + VIRTQ_USED_IDX_OFFSET);

        Adoption a = Adoption.recover(journal(true), fds(memFd));

        assertEquals(BatchOutcome.ROLLED_FORWARD, a.recovered().queue(0).interruptedBatch());
        assertArrayEquals(new int[] {1}, a.replayHeads().get(0));
    }

    @Test
    void shouldRollBackBatchWhenGuestDidNotSeeIt() {
        int memFd = keep(Memfd.memfd_create("adoption-test", Memfd.MFD_CLOEXEC));
        Unistd.ftruncate(memFd, GUEST_BYTES);

        Adoption a = Adoption.recover(journal(true), fds(memFd));

        assertEquals(BatchOutcome.ROLLED_BACK, a.recovered().queue(0).interruptedBatch());
        assertArrayEquals(new int[] {3, 5, 1}, a.replayHeads().get(0));
    }

    @Test
    void shouldFailWhenInterruptedBatchNeedsGuestMemoryThatCannotBeMapped() {
        MemorySegment j = journal(true);
        Map<String, Integer> fds = fds(unmappableFd());
        assertThrows(RuntimeException.class, () -> Adoption.recover(j, fds));
    }
}
