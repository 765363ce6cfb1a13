package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(10)
class UnistdTest {
    @TempDir
    Path dir;

    @Test
    void shouldNameEbadfWhenClosingInvalidFd() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Unistd.close(-1));
        assertEquals("close", e.call());
        assertEquals(Errno.EBADF, e.errno());
        assertEquals("EBADF", e.errnoName());
        assertEquals("close: EBADF (errno 9): Bad file descriptor", e.getMessage());
    }

    @Test
    void shouldReadBackWhatWasWrittenWhenUsingPwriteAndPread() throws Exception {
        Path file = dir.resolve("data");
        int fd = Fcntl.open(file.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_CLOEXEC, 0600);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(16);
            out.set(JAVA_LONG, 0, 0x1122334455667788L);
            out.set(JAVA_LONG, 8, -1L);
            assertEquals(16, Unistd.pwrite(fd, out, 16, 100));
            Unistd.fdatasync(fd);
            MemorySegment in = arena.allocate(16);
            assertEquals(16, Unistd.pread(fd, in, 16, 100));
            assertEquals(0x1122334455667788L, in.get(JAVA_LONG, 0));
            assertEquals(0, Unistd.pread(fd, in, 16, 116));
            assertEquals(116, Unistd.lseek(fd, 0, Unistd.SEEK_END));
            assertEquals(116, Files.size(file));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldRejectCountWhenLargerThanSegment() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment small = arena.allocate(8);
            assertThrows(IndexOutOfBoundsException.class, () -> Unistd.read(0, small, 9));
            assertThrows(IllegalArgumentException.class, () -> Unistd.write(1, MemorySegment.ofArray(new byte[8]), 8));
        }
    }

    @Test
    void shouldReportRegularFileWhenFstatOnTempFile() throws Exception {
        Path file = dir.resolve("sized");
        Files.write(file, new byte[12345]);
        int fd = Fcntl.open(file.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        try {
            Stat.FileStat stat = Stat.fstat(fd);
            assertTrue(stat.isRegularFile());
            assertFalse(stat.isBlockDevice());
            assertEquals(12345, stat.sizeBytes());
            assertTrue(stat.blockSizeBytes() > 0);
            assertEquals(stat, Stat.stat(file.toString()));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldGrowFileWhenFallocateAndTruncate() throws Exception {
        int fd = Fcntl.open(dir.resolve("alloc").toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_CLOEXEC, 0600);
        try {
            Fcntl.fallocate(fd, 0, 0, 65536);
            assertEquals(65536, Stat.fstat(fd).sizeBytes());
            Unistd.ftruncate(fd, 4096);
            assertEquals(4096, Stat.fstat(fd).sizeBytes());
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldThrowEnoentWhenUnlinkingMissingFileOrOpeningIt() {
        String missing = dir.resolve("missing").toString();
        assertEquals(
                Errno.ENOENT,
                assertThrows(ErrnoException.class, () -> Unistd.unlink(missing)).errno());
        ErrnoException e = assertThrows(ErrnoException.class, () -> Fcntl.open(missing, Fcntl.O_RDONLY, 0));
        assertEquals("open " + missing, e.call());
    }

    @Test
    void shouldThrowEnottyWhenBlockIoctlOnRegularFile() throws Exception {
        Path file = dir.resolve("notblock");
        Files.write(file, new byte[1]);
        int fd = Fcntl.open(file.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
        try {
            assertEquals(
                    Errno.ENOTTY,
                    assertThrows(ErrnoException.class, () -> Ioctl.blkGetSize64(fd))
                            .errno());
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldToggleFlagsWhenSetNonBlockingAndDup() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        int copy = Unistd.dup(fd);
        try {
            Fcntl.setNonBlocking(fd, true);
            // O_NONBLOCK lives on the open file description, which the dup shares
            assertEquals(Fcntl.O_NONBLOCK, Fcntl.fcntl(copy, Fcntl.F_GETFL, 0) & Fcntl.O_NONBLOCK);
            assertEquals(0, Eventfd.eventfd_read(copy));
            Fcntl.setNonBlocking(fd, false);
            assertEquals(0, Fcntl.fcntl(copy, Fcntl.F_GETFL, 0) & Fcntl.O_NONBLOCK);
            assertEquals(Fcntl.FD_CLOEXEC, Fcntl.fcntl(fd, Fcntl.F_GETFD, 0));
            assertEquals(0, Fcntl.fcntl(copy, Fcntl.F_GETFD, 0));
        } finally {
            Unistd.close(copy);
            Unistd.close(fd);
        }
    }
}
