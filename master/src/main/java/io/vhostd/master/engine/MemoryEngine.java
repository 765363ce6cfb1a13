package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Device engine for the bdevs without a device, {@code null} and {@code malloc}: one thread per bdev executes every
 * command inline, as a copy between guest memory and the bdev's RAM ({@code malloc}; write-zeroes and discard zero the
 * range) or as zeroes into guest memory with writes dropped ({@code null}). Same checks as the other engines ({@link
 * CommandCheck}), same polling: a time-based spin budget after the last piece of work ({@code vhostd.poll.spin.us}),
 * then a sleep in poll(2) on every queue pair's submission eventfd and the engine's own. No system call per command
 * while busy and no allocation per command: guest buffers are the regions' own segments (no per-command {@code
 * MemorySegment}), zeroes are copied from one zeroed buffer.
 */
public final class MemoryEngine extends PollingEngine<PollingEngine.QueueSlot> {
    private static final System.Logger LOG = System.getLogger(MemoryEngine.class.getName());

    private static final int ZEROES_BYTES = 64 * 1024;

    /** The bdev's RAM ({@code malloc}), or null ({@code null}: nothing is stored). */
    private final MemorySegment memory;

    private final Arena arena = Arena.ofShared();
    private final MemorySegment zeroes;

    /**
     * Starts the engine thread.
     *
     * @param bdev a {@code null} bdev (no memory) or a {@code malloc} bdev ({@link Bdev#memory()})
     * @param maxSegments most data segments of one command
     * @throws IllegalArgumentException if the bdev's memory is smaller than its size
     */
    public MemoryEngine(Bdev bdev, int maxSegments) {
        super(bdev, maxSegments, LOG);
        this.memory = bdev.memory();
        if (memory != null && memory.byteSize() < bdev.sizeBytes()) {
            abandon();
            arena.close();
            throw new IllegalArgumentException("bdev " + bdev.name() + ": memory smaller than its size");
        }
        // native memory is zeroed when allocated
        this.zeroes = arena.allocate(ZEROES_BYTES, 4096);
        start();
    }

    @Override
    public String kind() {
        return "memory";
    }

    @Override
    QueueSlot newSlot(int index, QpairBinding binding) {
        return new QueueSlot(index, binding);
    }

    @Override
    void execute(QueueSlot slot, VirtNvmeQueuePair.Command command, int cid) {
        int status;
        try {
            copy(command, slot.binding.regions());
            status = VirtNvmeStatus.SUCCESS;
        } catch (IllegalStateException | IndexOutOfBoundsException e) {
            // a region unmapped under the command (the slave broke the unregister protocol): the guest memory is at
            // fault; fail the command, keep serving
            status = deviceError(slot, command.opcode(), Errno.EFAULT);
        }
        int opcode = command.opcode();
        // spec virtnvme.md §7: the result is the bytes transferred by READ and WRITE, 0 for every other opcode
        boolean transfers = opcode == VirtNvmeOpcodes.NVME_OPC_READ || opcode == VirtNvmeOpcodes.NVME_OPC_WRITE;
        complete(slot, cid, status, status == VirtNvmeStatus.SUCCESS && transfers ? command.lengthBytes() : 0);
    }

    /** Executes a checked command against the bdev's RAM. */
    private void copy(VirtNvmeQueuePair.Command command, RegionTable regions) {
        int opcode = command.opcode();
        long offset = command.offsetBytes();
        switch (opcode) {
            case VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeOpcodes.NVME_OPC_WRITE -> {
                boolean read = opcode == VirtNvmeOpcodes.NVME_OPC_READ;
                long pos = offset;
                int n = command.segmentCount();
                for (int i = 0; i < n; i++) {
                    // CommandCheck found each segment inside its region: the lookup cannot miss
                    MemorySegment region = regions.lookup(command.segmentRegionId(i));
                    long regionOffset = command.segmentRegionOffset(i);
                    long length = Integer.toUnsignedLong(command.segmentLengthBytes(i));
                    if (memory == null) {
                        if (read) {
                            zero(region, regionOffset, length);
                        }
                    } else if (read) {
                        MemorySegment.copy(memory, pos, region, regionOffset, length);
                    } else {
                        MemorySegment.copy(region, regionOffset, memory, pos, length);
                    }
                    pos += length;
                }
            }
            case VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES, VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT -> {
                if (memory != null) {
                    zero(memory, offset, Integer.toUnsignedLong(command.lengthBytes()));
                }
            }
            default -> {
                // NVME_OPC_FLUSH: RAM has no cache to write back
            }
        }
    }

    /** Copies {@code lengthBytes} of zeroes to {@code target} at {@code offset}. */
    private void zero(MemorySegment target, long offset, long lengthBytes) {
        long done = 0;
        while (done < lengthBytes) {
            long chunk = Math.min(ZEROES_BYTES, lengthBytes - done);
            MemorySegment.copy(zeroes, 0, target, offset + done, chunk);
            done += chunk;
        }
    }

    @Override
    void onClosed() {
        arena.close();
    }
}
