package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(10)
class IoUringTest {
    @TempDir
    Path dir;

    record Cqe(long userData, int res, int flags) {}

    @BeforeAll
    static void requireIoUring() {
        assumeTrue(IoUring.isAvailable(), "io_uring is not available on this machine");
    }

    private static List<Cqe> reapAtLeast(IoUring ring, int count) {
        List<Cqe> cqes = new ArrayList<>();
        while (cqes.size() < count) {
            ring.submitAndWait(count - cqes.size());
            ring.reapCompletions((userData, res, flags) -> cqes.add(new Cqe(userData, res, flags)));
        }
        return cqes;
    }

    @Test
    void shouldReadBackWhatWritevWroteWhenUsingReadv() throws Exception {
        Path file = dir.resolve("uring");
        int fd = Fcntl.open(file.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_CLOEXEC, 0600);
        try (IoUring ring = new IoUring(8, 0);
                Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(4096, 4096);
            MemorySegment b = arena.allocate(4096, 4096);
            a.fill((byte) 'A');
            b.fill((byte) 'B');
            IovecArray out = new IovecArray(arena, 2);
            out.set(0, a);
            out.set(1, b.address(), 100);
            assertTrue(ring.prepWritev(fd, out.address(), 2, 4096, 1));
            assertEquals(1, ring.pendingSubmissions());
            List<Cqe> written = reapAtLeast(ring, 1);
            assertEquals(new Cqe(1, 4196, 0), written.getFirst());

            assertTrue(ring.prepFsync(fd, IoUring.IORING_FSYNC_DATASYNC, 2));
            assertEquals(2, reapAtLeast(ring, 1).getFirst().userData());
            assertEquals(0, ring.pendingSubmissions());
            assertEquals(4096 + 4196, Files.size(file));

            MemorySegment c = arena.allocate(4096, 4096);
            MemorySegment d = arena.allocate(100, 8);
            IovecArray in = new IovecArray(arena, 2);
            in.set(0, c);
            in.set(1, d);
            assertTrue(ring.prepReadv(fd, in.address(), 2, 4096, 3));
            Cqe read = reapAtLeast(ring, 1).getFirst();
            assertEquals(new Cqe(3, 4196, 0), read);
            assertArrayEquals(a.toArray(JAVA_BYTE), c.toArray(JAVA_BYTE));
            assertArrayEquals(b.asSlice(0, 100).toArray(JAVA_BYTE), d.toArray(JAVA_BYTE));

            assertTrue(ring.prepRead(fd, c.address(), 10, 0, 4));
            assertEquals(new Cqe(4, 10, 0), reapAtLeast(ring, 1).getFirst());
            assertEquals(0, c.get(JAVA_BYTE, 0));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldCompleteReadWhenEventfdWrittenAfterSubmission() {
        int efd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try (IoUring ring = new IoUring(4, 0);
                Arena arena = Arena.ofConfined()) {
            MemorySegment counter = arena.allocate(8, 8);
            assertTrue(ring.prepRead(efd, counter.address(), 8, 0, 99));
            assertEquals(1, ring.submit());
            // nothing can complete before the write: the read is parked on the empty eventfd
            assertEquals(0, ring.reapCompletions((userData, res, flags) -> {}));
            Eventfd.eventfd_write(efd, 5);
            assertEquals(new Cqe(99, 8, 0), reapAtLeast(ring, 1).getFirst());
            assertEquals(5, counter.get(JAVA_LONG, 0));
        } finally {
            Unistd.close(efd);
        }
    }

    @Test
    void shouldCompleteReadWithEcanceledWhenCancelledByUserData() {
        int efd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try (IoUring ring = new IoUring(4, 0);
                Arena arena = Arena.ofConfined()) {
            MemorySegment counter = arena.allocate(8, 8);
            assertTrue(ring.prepRead(efd, counter.address(), 8, 0, 41));
            assertEquals(1, ring.submit());

            assertTrue(ring.prepCancel(41, 0, 42));

            List<Cqe> cqes = reapAtLeast(ring, 2);
            assertTrue(cqes.contains(new Cqe(41, -Errno.ECANCELED, 0)), "the parked read is cancelled: " + cqes);
            assertTrue(cqes.contains(new Cqe(42, 0, 0)), "the cancel found it: " + cqes);
            // nobody reads the eventfd any more: a write stays in its counter
            Eventfd.eventfd_write(efd, 3);
            assertEquals(Poll.POLLIN, Poll.poll(efd, Poll.POLLIN, 0));
            assertTrue(ring.prepCancel(41, 0, 43));
            assertEquals(new Cqe(43, -Errno.ENOENT, 0), reapAtLeast(ring, 1).getFirst(), "nothing left to cancel");
        } finally {
            Unistd.close(efd);
        }
    }

    @Test
    void shouldReturnFalseWhenSubmissionQueueFull() {
        try (IoUring ring = new IoUring(4, 0)) {
            assertEquals(4, ring.sqEntries());
            for (int i = 0; i < 4; i++) {
                assertTrue(ring.prepNop(i));
            }
            assertFalse(ring.prepNop(4));
            assertEquals(0, ring.sqSpaceLeft());
            List<Cqe> cqes = reapAtLeast(ring, 4);
            assertEquals(
                    List.of(0L, 1L, 2L, 3L), cqes.stream().map(Cqe::userData).toList());
            assertEquals(4, ring.sqSpaceLeft());
            // wrap the ring indices several times
            for (int round = 0; round < 10; round++) {
                assertTrue(ring.prepNop(round));
                assertEquals(round, reapAtLeast(ring, 1).getFirst().userData());
            }
        }
    }

    @Test
    void shouldWriteAndFallocateWhenUsingRegisteredFile() throws Exception {
        Path file = dir.resolve("fixed");
        int fd = Fcntl.open(file.toString(), Fcntl.O_RDWR | Fcntl.O_CREAT | Fcntl.O_CLOEXEC, 0600);
        try (IoUring ring = new IoUring(4, 0);
                Arena arena = Arena.ofConfined()) {
            ring.registerFiles(new int[] {fd});
            MemorySegment buf = arena.allocate(512, 512);
            buf.fill((byte) 7);
            assertTrue(ring.prepRw(IoUring.IORING_OP_WRITE, 0, buf.address(), 512, 0, 0, IoUring.IOSQE_FIXED_FILE, 11));
            assertEquals(new Cqe(11, 512, 0), reapAtLeast(ring, 1).getFirst());
            assertTrue(ring.prepFallocate(fd, 0, 0, 65536, 12));
            assertEquals(new Cqe(12, 0, 0), reapAtLeast(ring, 1).getFirst());
            assertEquals(65536, Files.size(file));
            ring.unregisterFiles();
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldReportNegativeErrnoWhenOperationFails() {
        try (IoUring ring = new IoUring(2, 0);
                Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(8);
            assertTrue(ring.prepRead(-1, buf.address(), 8, 0, 5));
            assertEquals(new Cqe(5, -Errno.EBADF, 0), reapAtLeast(ring, 1).getFirst());
        }
    }
}
