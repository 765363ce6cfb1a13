package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class MemfdEventfdPollTest {
    private static final int RW = Mman.PROT_READ | Mman.PROT_WRITE;

    @Test
    void shouldShareMemoryWhenMemfdMappedTwice() {
        int fd = Memfd.memfd_create("test-shared", Memfd.MFD_CLOEXEC | Memfd.MFD_ALLOW_SEALING);
        try (Arena arena = Arena.ofConfined()) {
            Unistd.ftruncate(fd, 2 * 4096);
            MemorySegment first = Mman.mmap(2 * 4096, RW, Mman.MAP_SHARED, fd, 0, arena);
            MemorySegment second = Mman.mmap(2 * 4096, RW, Mman.MAP_SHARED, fd, 0, arena);
            assertEquals(2 * 4096, first.byteSize());
            assertNotEquals(first.address(), second.address());
            first.set(JAVA_LONG, 4096, 0xCAFEBABEL);
            assertEquals(0xCAFEBABEL, second.get(JAVA_LONG, 4096));
            MemorySegment atOffset = Mman.mmap(4096, RW, Mman.MAP_SHARED, fd, 4096, arena);
            assertEquals(0xCAFEBABEL, atOffset.get(JAVA_LONG, 0));
            Mman.madvise(first, Mman.MADV_WILLNEED);
            Mman.msync(first, Mman.MS_SYNC);
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldRefuseResizeWhenMemfdSealed() {
        int fd = Memfd.memfd_create("test-sealed", Memfd.MFD_CLOEXEC | Memfd.MFD_ALLOW_SEALING);
        try {
            Unistd.ftruncate(fd, 4096);
            Fcntl.fcntl(fd, Fcntl.F_ADD_SEALS, Fcntl.F_SEAL_SHRINK | Fcntl.F_SEAL_GROW | Fcntl.F_SEAL_SEAL);
            assertEquals(
                    Errno.EPERM,
                    assertThrows(ErrnoException.class, () -> Unistd.ftruncate(fd, 0))
                            .errno());
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldThrowWhenMmapOfInvalidFd() {
        try (Arena arena = Arena.ofConfined()) {
            ErrnoException e =
                    assertThrows(ErrnoException.class, () -> Mman.mmap(4096, RW, Mman.MAP_SHARED, -1, 0, arena));
            assertEquals(Errno.EBADF, e.errno());
        }
    }

    @Test
    void shouldSumWritesAndReturnZeroWhenEventfdEmpty() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        try {
            assertEquals(0, Eventfd.eventfd_read(fd));
            Eventfd.eventfd_write(fd, 3);
            Eventfd.eventfd_write(fd, 4);
            assertEquals(7, Eventfd.eventfd_read(fd));
            assertEquals(0, Eventfd.eventfd_read(fd));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldDecrementByOneWhenEventfdIsSemaphore() {
        int fd = Eventfd.eventfd(2, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK | Eventfd.EFD_SEMAPHORE);
        try {
            assertEquals(1, Eventfd.eventfd_read(fd));
            assertEquals(1, Eventfd.eventfd_read(fd));
            assertEquals(0, Eventfd.eventfd_read(fd));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldReportPollinWhenEventfdSignalled() {
        int fd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        try {
            assertEquals(0, Poll.poll(fd, Poll.POLLIN, 0));
            Eventfd.eventfd_write(fd, 1);
            assertEquals(Poll.POLLIN, Poll.poll(fd, Poll.POLLIN, -1));
            assertEquals(Poll.POLLNVAL, Poll.poll(Integer.MAX_VALUE, Poll.POLLIN, 0));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldReportOnlyReadyEntryWhenPollSetPolled() {
        int quiet = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        int ready = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        try (Poll.PollSet set = new Poll.PollSet(4)) {
            set.set(0, quiet, Poll.POLLIN);
            set.set(1, ready, Poll.POLLIN);
            assertEquals(2, set.size());
            assertEquals(0, set.poll(0));
            Eventfd.eventfd_write(ready, 5);
            assertEquals(1, set.poll(1000));
            assertEquals(0, set.revents(0));
            assertEquals(Poll.POLLIN, set.revents(1));
            assertEquals(ready, set.fd(1));
            set.size(1);
            assertEquals(0, set.poll(0));
            assertThrows(IndexOutOfBoundsException.class, () -> set.set(4, quiet, Poll.POLLIN));
        } finally {
            Unistd.close(quiet);
            Unistd.close(ready);
        }
    }

    @Test
    void shouldFailWithExplicitErrnoWhenMemfdFlagsInvalid() {
        ErrnoException e = assertThrows(ErrnoException.class, () -> Memfd.memfd_create("bad", 0x7ff));
        assertEquals(Errno.EINVAL, e.errno());
    }
}
