package io.vhostd.shm.virtnvme;

/**
 * Status field values of a VirtNvme CQE: the NVMe 15-bit Status Field (NVM Express Base Specification, "Status Field
 * Definition"), {@code statusField = (SCT << 8) | SC}; the CRD, M and DNR bits above SCT are zero in version 1. The
 * CQE stores {@code (statusField << 1) | phase} in its u16 at {@link VirtNvmeDescriptor#CQE_STATUS_OFFSET}.
 */
public final class VirtNvmeStatus {
    /** Status Code Type: Generic Command Status. */
    public static final int SCT_GENERIC = 0x0;

    /** Status Code Type: Media and Data Integrity Errors. */
    public static final int SCT_MEDIA = 0x2;

    /** Shift of the SCT within the status field. */
    public static final int SCT_SHIFT = 8;

    /** Mask of the SCT once shifted down. */
    public static final int SCT_MASK = 0x7;

    /** Mask of the SC. */
    public static final int SC_MASK = 0xFF;

    /** Generic: Successful Completion. */
    public static final int SUCCESS = 0x00;

    /** Generic: Invalid Command Opcode. */
    public static final int INVALID_OPCODE = 0x01;

    /** Generic: Invalid Field in Command (a reserved bit, a CID, a segment count or a segment out of range). */
    public static final int INVALID_FIELD = 0x02;

    /** Generic: Data Transfer Error. */
    public static final int DATA_TRANSFER_ERROR = 0x04;

    /** Generic: Internal Error. */
    public static final int INTERNAL_ERROR = 0x06;

    /** Generic: LBA Out of Range (the byte range passes the end of the volume). */
    public static final int LBA_OUT_OF_RANGE = 0x80;

    /** Media: Write Fault. */
    public static final int WRITE_FAULT = (SCT_MEDIA << SCT_SHIFT) | 0x80;

    /** Media: Unrecovered Read Error. */
    public static final int UNRECOVERED_READ_ERROR = (SCT_MEDIA << SCT_SHIFT) | 0x81;

    private VirtNvmeStatus() {}

    /**
     * @param sct status code type, 0..7
     * @param sc status code, 0..255
     * @return the status field
     */
    public static int statusField(final int sct, final int sc) {
        return ((sct & SCT_MASK) << SCT_SHIFT) | (sc & SC_MASK);
    }

    /**
     * @param statusField a status field
     * @return its status code type
     */
    public static int sct(final int statusField) {
        return (statusField >>> SCT_SHIFT) & SCT_MASK;
    }

    /**
     * @param statusField a status field
     * @return its status code
     */
    public static int sc(final int statusField) {
        return statusField & SC_MASK;
    }

    /**
     * For logs and errors, not for the data path.
     *
     * @param statusField a status field
     * @return its name, e.g. {@code LBA_OUT_OF_RANGE}, or {@code UNKNOWN(sct=0x.., sc=0x..)}
     */
    public static String name(final int statusField) {
        return switch (statusField) {
            case SUCCESS -> "SUCCESS";
            case INVALID_OPCODE -> "INVALID_OPCODE";
            case INVALID_FIELD -> "INVALID_FIELD";
            case DATA_TRANSFER_ERROR -> "DATA_TRANSFER_ERROR";
            case INTERNAL_ERROR -> "INTERNAL_ERROR";
            case LBA_OUT_OF_RANGE -> "LBA_OUT_OF_RANGE";
            case WRITE_FAULT -> "WRITE_FAULT";
            case UNRECOVERED_READ_ERROR -> "UNRECOVERED_READ_ERROR";
            default ->
                "UNKNOWN(sct=0x" + Integer.toHexString(sct(statusField)) + ", sc=0x"
                        + Integer.toHexString(sc(statusField)) + ")";
        };
    }
}
