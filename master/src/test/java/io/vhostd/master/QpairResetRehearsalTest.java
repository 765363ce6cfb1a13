package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.MemoryBdevs;
import io.vhostd.master.engine.DeviceEngine;
import io.vhostd.master.engine.MemoryEngine;
import io.vhostd.master.engine.QpairBinding;
import io.vhostd.master.engine.RegionTable;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The master's rehearsal of a handover's queue-pair reset (issue #4): scratch queue pairs on a live engine. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class QpairResetRehearsalTest {
    private static final int DEPTH = 64;
    private static final int MAX_SEGMENTS = 8;

    @Test
    void shouldAttachAndDetachScratchQueuePairWithoutTouchingServedOnesWhenRehearsing() {
        Bdev bdev = MemoryBdevs.createNull("rehearsal", 1 << 20, 512, false);
        DeviceEngine engine = new MemoryEngine(bdev, MAX_SEGMENTS);
        int sq = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        int cq = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try (Arena arena = Arena.ofShared();
                RegionTable regions = new RegionTable()) {
            // a served queue pair stays attached through the rehearsal
            MemorySegment served = arena.allocate(VirtNvmeDescriptor.lengthBytes(DEPTH, MAX_SEGMENTS), 4096);
            engine.attach(
                    new QpairBinding(VirtNvmeQueuePair.format(served, 1, DEPTH, MAX_SEGMENTS), sq, cq, regions, 1));

            assertEquals(200, Master.rehearseQpairReset(List.of(engine), 200, DEPTH, MAX_SEGMENTS, () -> false));

            // the scratch id is free again; the served one is still attached (a second attach of it is refused)
            MemorySegment again = arena.allocate(VirtNvmeDescriptor.lengthBytes(DEPTH, MAX_SEGMENTS), 4096);
            engine.attach(new QpairBinding(
                    VirtNvmeQueuePair.format(again, Master.REHEARSAL_QPAIR_ID, DEPTH, MAX_SEGMENTS),
                    sq,
                    cq,
                    regions,
                    1));
            engine.detach(Master.REHEARSAL_QPAIR_ID);
            assertThrows(
                    IllegalStateException.class,
                    () -> engine.attach(new QpairBinding(
                            VirtNvmeQueuePair.format(again, 1, DEPTH, MAX_SEGMENTS), sq, cq, regions, 1)));
            engine.detach(1);
        } finally {
            engine.close();
            bdev.close();
            Unistd.close(sq);
            Unistd.close(cq);
        }
    }

    @Test
    void shouldStopEarlyWhenAskedAndFailWhenEngineStopped() {
        Bdev bdev = MemoryBdevs.createNull("rehearsal", 1 << 20, 512, false);
        DeviceEngine engine = new MemoryEngine(bdev, MAX_SEGMENTS);
        try {
            AtomicInteger asked = new AtomicInteger();
            assertEquals(
                    5,
                    Master.rehearseQpairReset(
                            List.of(engine), 100, DEPTH, MAX_SEGMENTS, () -> asked.incrementAndGet() > 5));
            engine.close();
            assertThrows(
                    IllegalStateException.class,
                    () -> Master.rehearseQpairReset(List.of(engine), 1, DEPTH, MAX_SEGMENTS, () -> false));
        } finally {
            engine.close();
            bdev.close();
        }
    }
}
