package io.vhostd.master.engine;

import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_FLUSH;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_READ;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_WRITE;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.MemorySegment;

/**
 * The checks a command from a slave (a peer process: untrusted) passes before the engine executes it
 * ({@code virtnvme-shm/spec/virtnvme.md} §9): the SQE's own syntax ({@link VirtNvmeQueuePair.Command#validate()}:
 * known opcode, flags, CID, segment count, segment lengths adding up to the command's length), then the queue pair's
 * volume, a byte range inside the bdev and aligned to 512 bytes, and every segment inside a registered guest memory
 * region. No allocation.
 */
public final class CommandCheck {
    /** Byte granularity of offsets and lengths (the virtio-blk sector). */
    public static final int SECTOR_BYTES = 512;

    private CommandCheck() {}

    /**
     * Checks {@code command} and, for reads and writes, resolves each data segment to an address in this process
     * (no {@code MemorySegment} is created per command).
     *
     * @param addresses out: native address of each data segment in this process
     * @param lengths out: length of each data segment
     * @return {@link VirtNvmeStatus#SUCCESS} or the status to complete the command with
     */
    public static int check(
            VirtNvmeQueuePair.Command command,
            Bdev bdev,
            int nsid,
            RegionTable regions,
            long[] addresses,
            long[] lengths) {
        // spec §9.1 first: it also bounds the segment count, so the segment accessors below cannot throw (a throw
        // would end the engine thread and every queue pair it serves)
        int syntax = command.validate();
        if (syntax != VirtNvmeStatus.SUCCESS) {
            return syntax;
        }
        int opcode = command.opcode();
        if (command.nsid() != nsid) {
            return VirtNvmeStatus.INVALID_FIELD;
        }
        switch (opcode) {
            case NVME_OPC_FLUSH:
                return VirtNvmeStatus.SUCCESS;
            case NVME_OPC_READ:
            case NVME_OPC_WRITE:
                break;
            case NVME_OPC_WRITE_ZEROES:
            case NVME_OPC_DATASET_MANAGEMENT:
                if (bdev.readOnly()) {
                    return VirtNvmeStatus.WRITE_FAULT;
                }
                return checkRange(command.offsetBytes(), Integer.toUnsignedLong(command.lengthBytes()), bdev);
            default:
                return VirtNvmeStatus.INVALID_OPCODE;
        }
        if (opcode == NVME_OPC_WRITE && bdev.readOnly()) {
            return VirtNvmeStatus.WRITE_FAULT;
        }
        long length = Integer.toUnsignedLong(command.lengthBytes());
        int status = checkRange(command.offsetBytes(), length, bdev);
        if (status != VirtNvmeStatus.SUCCESS) {
            return status;
        }
        int count = command.segmentCount();
        if (count <= 0 || count > addresses.length) {
            return VirtNvmeStatus.INVALID_FIELD;
        }
        long total = 0;
        for (int i = 0; i < count; i++) {
            MemorySegment region = regions.lookup(command.segmentRegionId(i));
            long segOffset = command.segmentRegionOffset(i);
            long segLength = Integer.toUnsignedLong(command.segmentLengthBytes(i));
            // untrusted: the segment must lie inside the region (overflow-safe form of offset + length <= size);
            // spec §7.1 / §9.2: an unknown region or a segment outside it is INVALID_FIELD
            if (region == null
                    || segLength == 0
                    || segOffset < 0
                    || segOffset > region.byteSize()
                    || segLength > region.byteSize() - segOffset) {
                return VirtNvmeStatus.INVALID_FIELD;
            }
            addresses[i] = region.address() + segOffset;
            lengths[i] = segLength;
            total += segLength;
        }
        return total == length ? VirtNvmeStatus.SUCCESS : VirtNvmeStatus.INVALID_FIELD;
    }

    /**
     * Whether a checked READ or WRITE may go through the bdev's {@code O_DIRECT} fd: its offset, its length, and every
     * segment's address and length are multiples of {@code blockSizeBytes} (a power of two). No allocation.
     *
     * @param count the number of entries of {@code addresses} and {@code lengths} that {@link #check} filled
     */
    public static boolean isAligned(
            long offsetBytes, long lengthBytes, long[] addresses, long[] lengths, int count, int blockSizeBytes) {
        long bits = offsetBytes | lengthBytes;
        for (int i = 0; i < count; i++) {
            bits |= addresses[i] | lengths[i];
        }
        return (bits & (blockSizeBytes - 1)) == 0;
    }

    private static int checkRange(long offset, long length, Bdev bdev) {
        if (length == 0 || offset % SECTOR_BYTES != 0 || length % SECTOR_BYTES != 0) {
            return VirtNvmeStatus.INVALID_FIELD;
        }
        // overflow-safe: offset + length <= size
        if (offset < 0 || offset > bdev.sizeBytes() || length > bdev.sizeBytes() - offset) {
            return VirtNvmeStatus.LBA_OUT_OF_RANGE;
        }
        return VirtNvmeStatus.SUCCESS;
    }
}
