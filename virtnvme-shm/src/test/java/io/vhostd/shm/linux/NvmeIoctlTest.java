package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The NVMe admin pass-through's command encoding, pinned with literal numbers taken from {@code <linux/nvme_ioctl.h>}
 * compiled with gcc on x86_64 ({@code offsetof}, {@code sizeof}, {@code NVME_IOCTL_ADMIN_CMD}), and its errors on a
 * device that is not NVMe. (A real controller is exercised by tests/vm/capture-nvme-logs.sh through nvme-cli, whose
 * page the master's decoder tests read.)
 */
@Timeout(10)
class NvmeIoctlTest {
    @Test
    void shouldMatchKernelHeaderWhenComputingIoctlNumberAndOffsets() {
        // _IOWR(type, nr, size) = _IOC_READ|_IOC_WRITE (3) << 30 | size << 16 | type << 8 | nr
        long iowr = 3L << 30 | (long) NvmeIoctl.NVME_PASSTHRU_CMD_BYTES << 16 | 'N' << 8 | 0x41;
        assertEquals(0xc0484e41L, iowr);
        assertEquals(0xc0484e41L, NvmeIoctl.NVME_IOCTL_ADMIN_CMD);
        assertEquals(72, NvmeIoctl.NVME_PASSTHRU_CMD_BYTES);
        assertEquals(4, NvmeIoctl.NSID_OFFSET);
        assertEquals(16, NvmeIoctl.METADATA_OFFSET);
        assertEquals(24, NvmeIoctl.ADDR_OFFSET);
        assertEquals(32, NvmeIoctl.METADATA_LEN_OFFSET);
        assertEquals(36, NvmeIoctl.DATA_LEN_OFFSET);
        assertEquals(40, NvmeIoctl.CDW10_OFFSET);
        assertEquals(44, NvmeIoctl.CDW11_OFFSET);
        assertEquals(60, NvmeIoctl.CDW15_OFFSET);
        assertEquals(64, NvmeIoctl.TIMEOUT_MS_OFFSET);
        assertEquals(68, NvmeIoctl.RESULT_OFFSET);
    }

    @Test
    void shouldEncodeSmartLogPageWhenAsked() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cmd = arena.allocate(72);
            cmd.fill((byte) 0x5a);
            NvmeIoctl.encodeGetLogPage(cmd, NvmeIoctl.NVME_LOG_SMART, NvmeIoctl.NVME_NSID_ALL, 512, 0x1000L);
            assertEquals(0x02, cmd.get(JAVA_BYTE, 0));
            assertEquals(0, cmd.get(JAVA_BYTE, 1));
            assertEquals(0xFFFFFFFF, cmd.get(JAVA_INT, 4));
            assertEquals(0x1000L, cmd.get(JAVA_LONG, 24));
            assertEquals(512, cmd.get(JAVA_INT, 36));
            // NUMD = 512 / 4 - 1 = 127 (0's based): NUMDL in CDW10 bits 31:16, LID 02h in bits 7:0
            assertEquals(0x007F0002, cmd.get(JAVA_INT, 40));
            assertEquals(0, cmd.get(JAVA_INT, 44));
            assertEquals(0, cmd.get(JAVA_INT, 64));
            assertEquals(0, cmd.get(JAVA_INT, 68));
        }
    }

    @Test
    void shouldSplitNumdWhenPageLongerThan256KiB() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cmd = arena.allocate(72);
            // 1 MiB = 262144 dwords: NUMD 262143 = 0x3FFFF -> NUMDL 0xFFFF, NUMDU 0x3
            NvmeIoctl.encodeGetLogPage(cmd, 0xC0, 1, 1 << 20, 0);
            assertEquals(0xFFFF00C0, cmd.get(JAVA_INT, 40));
            assertEquals(0x3, cmd.get(JAVA_INT, 44));
        }
    }

    @Test
    void shouldEncodeIdentifyControllerWhenAsked() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cmd = arena.allocate(72);
            NvmeIoctl.encodeIdentify(cmd, NvmeIoctl.NVME_ID_CNS_CTRL, 0x2000L);
            assertEquals(0x06, cmd.get(JAVA_BYTE, 0));
            assertEquals(0, cmd.get(JAVA_INT, 4));
            assertEquals(0x2000L, cmd.get(JAVA_LONG, 24));
            assertEquals(4096, cmd.get(JAVA_INT, 36));
            assertEquals(1, cmd.get(JAVA_INT, 40));
        }
    }

    @Test
    void shouldRejectLengthWhenNotDwordMultiple() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cmd = arena.allocate(72);
            assertThrows(IllegalArgumentException.class, () -> NvmeIoctl.encodeGetLogPage(cmd, 2, -1, 510, 0));
            assertThrows(IllegalArgumentException.class, () -> NvmeIoctl.encodeGetLogPage(cmd, 2, -1, 0, 0));
            assertThrows(IllegalArgumentException.class, () -> NvmeIoctl.encodeGetLogPage(cmd, 256, -1, 512, 0));
            assertThrows(IndexOutOfBoundsException.class, () -> NvmeIoctl.encodeIdentify(arena.allocate(64), 1, 0));
        }
    }

    @Test
    void shouldThrowEnottyWhenFdIsNotNvme() {
        int fd = Fcntl.open("/dev/null", Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        try {
            ErrnoException e = assertThrows(ErrnoException.class, () -> NvmeIoctl.getSmartLog(fd));
            assertEquals(Errno.ENOTTY, e.errno());
            assertTrue(e.call().startsWith("NVME_IOCTL_ADMIN_CMD Get Log Page (LID 02h)"), e.call());
            ErrnoException id = assertThrows(ErrnoException.class, () -> NvmeIoctl.identifyController(fd));
            assertEquals(Errno.ENOTTY, id.errno());
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldThrowEbadfWhenFdIsClosed() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> NvmeIoctl.getSmartLog(-1));
        assertEquals(Errno.EBADF, e.errno());
    }
}
