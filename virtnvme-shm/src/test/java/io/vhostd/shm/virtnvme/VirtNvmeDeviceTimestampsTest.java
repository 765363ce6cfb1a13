package io.vhostd.shm.virtnvme;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Spec §3.1: the master's per-CID device timestamps reach the slave with the CQE; a 1.0 region has none. */
@Timeout(10)
class VirtNvmeDeviceTimestampsTest {
    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void close() {
        arena.close();
    }

    @Test
    void shouldHandDeviceTimestampsToSubmitterWhenCompletionConsumed() {
        MemorySegment memory = arena.allocate(VirtNvmeDescriptor.lengthBytes(4, 1), 64);
        VirtNvmeQueuePair slave = VirtNvmeQueuePair.format(memory, 1, 4, 1);
        VirtNvmeQueuePair master = VirtNvmeQueuePair.attach(memory);
        slave.submit(VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, 3, 1, 0, 0, 0, new int[1], new long[1], new int[1]);
        slave.publishSubmissions();
        master.pollSubmissions(command -> master.deviceSubmitNs(command.cid(), 1_000), 8);
        master.deviceCompleteNs(3, 5_000);
        master.postCompletion(3, VirtNvmeStatus.SUCCESS, 0);
        master.publishCompletions();
        long[] seen = new long[2];
        slave.pollCompletions((cid, status, result) -> {
            seen[0] = slave.deviceSubmitNs(cid);
            seen[1] = slave.deviceCompleteNs(cid);
        });
        assertEquals(1_000, seen[0]);
        assertEquals(5_000, seen[1]);
        assertThrows(IllegalArgumentException.class, () -> slave.deviceSubmitNs(4));
    }

    @Test
    void shouldReadZeroTimestampsWhenRegionIsVersion1Dot0() {
        long length10 = VirtNvmeDescriptor.cidTimestampsOffset(4, 1);
        MemorySegment memory = arena.allocate(VirtNvmeDescriptor.lengthBytes(4, 1), 64);
        VirtNvmeQueuePair.format(memory, 1, 4, 1);
        // what a 1.0 master wrote: its version and its shorter length
        memory.set(VirtNvmeDescriptor.LONG_LE, VirtNvmeDescriptor.LENGTH_OFFSET, length10);
        VirtNvmeDescriptor.versionRelease(memory, 0x0001_0000);
        VirtNvmeQueuePair old = VirtNvmeQueuePair.attach(memory.asSlice(0, length10));
        old.deviceSubmitNs(2, 77);
        assertEquals(0, old.deviceSubmitNs(2));
        assertEquals(0, old.deviceCompleteNs(2));
    }
}
