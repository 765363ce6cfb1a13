package io.vhostd.shm.virtnvme;

/**
 * Opcodes of a VirtNvme SQE: the values of the NVMe NVM Command Set (NVM Command Set Specification, "I/O Commands
 * for the NVM Command Set"), with the NVMe names. The opcode is the SQE's u8 at {@link
 * VirtNvmeDescriptor#SQE_OPCODE_OFFSET}.
 */
public final class VirtNvmeOpcodes {
    /** Flush: make every completed write durable. No segments; offset and length are ignored. */
    public static final int NVME_OPC_FLUSH = 0x00;

    /** Write: from the segments (guest memory) to the bdev at the byte offset. */
    public static final int NVME_OPC_WRITE = 0x01;

    /** Read: from the bdev at the byte offset into the segments (guest memory). */
    public static final int NVME_OPC_READ = 0x02;

    /** Write Zeroes: the byte range reads back as zeroes. No segments. */
    public static final int NVME_OPC_WRITE_ZEROES = 0x08;

    /** Dataset Management, used only as deallocate (discard) of the byte range. No segments. */
    public static final int NVME_OPC_DATASET_MANAGEMENT = 0x09;

    private VirtNvmeOpcodes() {}

    /**
     * @param opcode an opcode value
     * @return true if version 1 defines it
     */
    public static boolean isDefined(final int opcode) {
        return switch (opcode) {
            case NVME_OPC_FLUSH, NVME_OPC_WRITE, NVME_OPC_READ, NVME_OPC_WRITE_ZEROES, NVME_OPC_DATASET_MANAGEMENT ->
                true;
            default -> false;
        };
    }

    /**
     * For logs and errors, not for the data path.
     *
     * @param opcode an opcode value
     * @return its NVMe name, e.g. {@code NVME_OPC_READ}, or {@code UNKNOWN(0x..)}
     */
    public static String name(final int opcode) {
        return switch (opcode) {
            case NVME_OPC_FLUSH -> "NVME_OPC_FLUSH";
            case NVME_OPC_WRITE -> "NVME_OPC_WRITE";
            case NVME_OPC_READ -> "NVME_OPC_READ";
            case NVME_OPC_WRITE_ZEROES -> "NVME_OPC_WRITE_ZEROES";
            case NVME_OPC_DATASET_MANAGEMENT -> "NVME_OPC_DATASET_MANAGEMENT";
            default -> "UNKNOWN(0x" + Integer.toHexString(opcode) + ")";
        };
    }
}
