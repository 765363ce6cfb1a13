package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The kernel's NVMe admin pass-through of {@code <linux/nvme_ioctl.h>}: {@code NVME_IOCTL_ADMIN_CMD} with a {@code
 * struct nvme_admin_cmd} (= {@code struct nvme_passthru_cmd}), used for Get Log Page (SMART / Health Information) and
 * Identify Controller.
 *
 * <pre>
 * struct nvme_passthru_cmd (72 bytes, offsets from gcc on x86_64):
 *   0 opcode u8 | 1 flags u8 | 2 rsvd1 u16 | 4 nsid u32 | 8 cdw2 u32 | 12 cdw3 u32 | 16 metadata u64 | 24 addr u64
 *  32 metadata_len u32 | 36 data_len u32 | 40 cdw10 | 44 cdw11 | 48 cdw12 | 52 cdw13 | 56 cdw14 | 60 cdw15
 *  64 timeout_ms u32 | 68 result u32 (out: completion dword 0)
 * </pre>
 *
 * <p>The ioctl works on the controller's character device ({@code /dev/nvme0}) and on a namespace's block device.
 * Linux lets unprivileged callers send only some Identify commands; Get Log Page needs {@code CAP_SYS_ADMIN}, else
 * {@code EACCES} ({@code nvme_cmd_allowed()} in {@code drivers/nvme/host/ioctl.c}). The ioctl returns -1 with errno
 * when the kernel could not run the command, and a positive NVMe status (the completion's Status Field: SCT in bits
 * 10:8, SC in bits 7:0, DNR bit 14) when the controller completed it with an error; both are thrown as {@link
 * ErrnoException}, the second with {@code EIO} and the status in {@link ErrnoException#call()}.
 */
public final class NvmeIoctl {
    /** {@code _IOWR('N', 0x41, struct nvme_admin_cmd)}: {@code 3 << 30 | 72 << 16 | 'N' << 8 | 0x41}. */
    public static final long NVME_IOCTL_ADMIN_CMD = 0xC0484E41L;

    /** {@code sizeof(struct nvme_passthru_cmd)}. */
    public static final int NVME_PASSTHRU_CMD_BYTES = 72;

    public static final int OPCODE_OFFSET = 0;
    public static final int FLAGS_OFFSET = 1;
    public static final int NSID_OFFSET = 4;
    public static final int CDW2_OFFSET = 8;
    public static final int CDW3_OFFSET = 12;
    public static final int METADATA_OFFSET = 16;
    public static final int ADDR_OFFSET = 24;
    public static final int METADATA_LEN_OFFSET = 32;
    public static final int DATA_LEN_OFFSET = 36;
    public static final int CDW10_OFFSET = 40;
    public static final int CDW11_OFFSET = 44;
    public static final int CDW12_OFFSET = 48;
    public static final int CDW13_OFFSET = 52;
    public static final int CDW14_OFFSET = 56;
    public static final int CDW15_OFFSET = 60;
    public static final int TIMEOUT_MS_OFFSET = 64;
    public static final int RESULT_OFFSET = 68;

    /** Admin opcode Get Log Page (NVMe Base Spec 2.0 §5.16). */
    public static final int NVME_ADMIN_GET_LOG_PAGE = 0x02;

    /** Admin opcode Identify (§5.17). */
    public static final int NVME_ADMIN_IDENTIFY = 0x06;

    /** Log Page Identifier SMART / Health Information (§5.16.1.3). */
    public static final int NVME_LOG_SMART = 0x02;

    /** Identify CNS 01h: Identify Controller data structure (§5.17.2.2). */
    public static final int NVME_ID_CNS_CTRL = 0x01;

    /** NSID FFFFFFFFh: the controller as a whole (every namespace). */
    public static final int NVME_NSID_ALL = 0xFFFFFFFF;

    /** Size of the SMART / Health Information log page. */
    public static final int NVME_SMART_LOG_BYTES = 512;

    /** Size of every Identify data structure. */
    public static final int NVME_IDENTIFY_DATA_BYTES = 4096;

    /** Largest Get Log Page transfer this binding asks for (NUMD is 32 bits of dwords; we read small pages only). */
    public static final int MAX_LOG_PAGE_BYTES = 1 << 20;

    private NvmeIoctl() {}

    /**
     * Fills {@code cmd} ({@value #NVME_PASSTHRU_CMD_BYTES} bytes) with a Get Log Page command: opcode 02h, {@code
     * nsid}, CDW10 = NUMDL (bits 31:16) | LID (bits 7:0), CDW11 = NUMDU (bits 15:0), where NUMD = {@code lengthBytes} /
     * 4 - 1 (a 0's based dword count, §5.16 Figure 194/195). LSP, RAE, the offset and the UUID index are 0.
     *
     * @param logId the Log Page Identifier (0..255)
     * @param lengthBytes a multiple of 4 in {@code [4, MAX_LOG_PAGE_BYTES]}
     * @param bufferAddress the user buffer's address ({@code addr}); 0 to leave it for the caller
     */
    public static void encodeGetLogPage(MemorySegment cmd, int logId, int nsid, int lengthBytes, long bufferAddress) {
        if (logId < 0 || logId > 0xFF) {
            throw new IllegalArgumentException("log id " + logId + " is not a byte");
        }
        if (lengthBytes < 4 || lengthBytes > MAX_LOG_PAGE_BYTES || lengthBytes % 4 != 0) {
            throw new IllegalArgumentException(
                    "log page length " + lengthBytes + " is not a multiple of 4 in [4, " + MAX_LOG_PAGE_BYTES + "]");
        }
        int numd = lengthBytes / 4 - 1;
        clear(cmd);
        cmd.set(JAVA_BYTE, OPCODE_OFFSET, (byte) NVME_ADMIN_GET_LOG_PAGE);
        cmd.set(JAVA_INT, NSID_OFFSET, nsid);
        cmd.set(JAVA_LONG, ADDR_OFFSET, bufferAddress);
        cmd.set(JAVA_INT, DATA_LEN_OFFSET, lengthBytes);
        cmd.set(JAVA_INT, CDW10_OFFSET, (numd & 0xFFFF) << 16 | logId);
        cmd.set(JAVA_INT, CDW11_OFFSET, numd >>> 16);
    }

    /**
     * Fills {@code cmd} with an Identify command: opcode 06h, CDW10 = CNS (bits 7:0), a {@value
     * #NVME_IDENTIFY_DATA_BYTES}-byte transfer, NSID 0 (Identify Controller takes none).
     */
    public static void encodeIdentify(MemorySegment cmd, int cns, long bufferAddress) {
        if (cns < 0 || cns > 0xFF) {
            throw new IllegalArgumentException("CNS " + cns + " is not a byte");
        }
        clear(cmd);
        cmd.set(JAVA_BYTE, OPCODE_OFFSET, (byte) NVME_ADMIN_IDENTIFY);
        cmd.set(JAVA_LONG, ADDR_OFFSET, bufferAddress);
        cmd.set(JAVA_INT, DATA_LEN_OFFSET, NVME_IDENTIFY_DATA_BYTES);
        cmd.set(JAVA_INT, CDW10_OFFSET, cns);
    }

    /**
     * Get Log Page, LID 02h (SMART / Health Information), NSID FFFFFFFFh (controller-wide), 512 bytes.
     *
     * @param fd the controller's character device ({@code /dev/nvme0}) or a namespace's block device, opened for
     *     reading
     * @return the raw 512-byte page, as the controller wrote it (little-endian fields)
     * @throws ErrnoException the kernel's errno ({@code EACCES} without {@code CAP_SYS_ADMIN}, {@code ENOTTY} when
     *     {@code fd} is not NVMe), or {@code EIO} when the controller completed the command with an error status
     */
    public static byte[] getSmartLog(int fd) {
        return getLogPage(fd, NVME_LOG_SMART, NVME_NSID_ALL, NVME_SMART_LOG_BYTES);
    }

    /**
     * Get Log Page of {@code lengthBytes} bytes from offset 0.
     *
     * @see #encodeGetLogPage
     * @see #getSmartLog
     */
    public static byte[] getLogPage(int fd, int logId, int nsid, int lengthBytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(lengthBytes, 4096);
            MemorySegment cmd = arena.allocate(NVME_PASSTHRU_CMD_BYTES, 8);
            encodeGetLogPage(cmd, logId, nsid, lengthBytes, data.address());
            adminCommand(fd, cmd, "Get Log Page (LID " + hexByte(logId) + ")");
            return data.toArray(JAVA_BYTE);
        }
    }

    /**
     * Identify, CNS 01h: the {@value #NVME_IDENTIFY_DATA_BYTES}-byte Identify Controller data structure.
     *
     * @throws ErrnoException as {@link #getSmartLog}
     */
    public static byte[] identifyController(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(NVME_IDENTIFY_DATA_BYTES, 4096);
            MemorySegment cmd = arena.allocate(NVME_PASSTHRU_CMD_BYTES, 8);
            encodeIdentify(cmd, NVME_ID_CNS_CTRL, data.address());
            adminCommand(fd, cmd, "Identify (CNS " + hexByte(NVME_ID_CNS_CTRL) + ")");
            return data.toArray(JAVA_BYTE);
        }
    }

    /**
     * {@code ioctl(fd, NVME_IOCTL_ADMIN_CMD, cmd)}; {@code cmd} must point ({@code addr}) at native memory of {@code
     * data_len} bytes that stays alive for the call.
     *
     * @param what the command, for the exception's message
     * @return completion dword 0 ({@code result})
     * @throws ErrnoException with the kernel's errno, or {@code EIO} and the NVMe status in the message when the
     *     controller completed the command with an error
     */
    public static int adminCommand(int fd, MemorySegment cmd, String what) {
        NativeSupport.checkNative(cmd, NVME_PASSTHRU_CMD_BYTES);
        int status;
        try {
            status = Ioctl.ioctl(fd, NVME_IOCTL_ADMIN_CMD, cmd);
        } catch (ErrnoException e) {
            throw new ErrnoException("NVME_IOCTL_ADMIN_CMD " + what, e.errno());
        }
        if (status != 0) {
            // a positive return is the NVMe completion's status field (nvme_submit_user_cmd), not an errno
            throw new ErrnoException(
                    "NVME_IOCTL_ADMIN_CMD " + what + ": NVMe status 0x" + Integer.toHexString(status) + " (SCT "
                            + ((status >>> 8) & 0x7) + ", SC " + hexByte(status & 0xFF) + ")",
                    Errno.EIO);
        }
        return cmd.get(JAVA_INT, RESULT_OFFSET);
    }

    private static void clear(MemorySegment cmd) {
        if (cmd.byteSize() < NVME_PASSTHRU_CMD_BYTES) {
            throw new IndexOutOfBoundsException(
                    "command segment of " + cmd.byteSize() + " bytes, need " + NVME_PASSTHRU_CMD_BYTES);
        }
        cmd.asSlice(0, NVME_PASSTHRU_CMD_BYTES).fill((byte) 0);
    }

    private static String hexByte(int b) {
        return String.format("%02Xh", b & 0xFF);
    }
}
