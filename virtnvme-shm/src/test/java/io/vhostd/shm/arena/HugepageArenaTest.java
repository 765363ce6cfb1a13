package io.vhostd.shm.arena;

import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Unistd;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class HugepageArenaTest {
    @Test
    void shouldUsePlainMemfdWhenHugepagesNotRequested() {
        try (HugepageArena arena = HugepageArena.create("test-plain", 10_000, false)) {
            assertFalse(arena.hugepages());
            assertEquals("hugepages not requested", arena.fallbackReason());
            assertEquals(12_288, arena.sizeBytes());
            assertEquals(12_288, arena.segment().byteSize());
            assertTrue(arena.fd() >= 0);
        }
    }

    @Test
    void shouldEitherUseHugepagesOrExplainWhyWhenPreferred() {
        try (HugepageArena arena = HugepageArena.create("test-huge", 3 << 20, true)) {
            if (arena.hugepages()) {
                assertNull(arena.fallbackReason());
                assertEquals(4 << 20, arena.sizeBytes());
            } else {
                assertNotNull(arena.fallbackReason());
                assertTrue(arena.fallbackReason().startsWith("2 MiB hugepages unavailable"), arena.fallbackReason());
                assertEquals(3 << 20, arena.sizeBytes());
            }
            arena.segment().set(JAVA_LONG, arena.sizeBytes() - 8, 1L);
        }
    }

    @Test
    void shouldAlignAndRefuseWhenArenaFull() {
        try (HugepageArena arena = HugepageArena.create("test-bump", 8192, false)) {
            assertEquals(0, arena.allocate(10, 8));
            assertEquals(64, arena.allocate(100, 64));
            assertEquals(4096, arena.allocate(4096, 4096));
            assertThrows(IllegalStateException.class, () -> arena.allocate(1, 1));
            assertThrows(IllegalArgumentException.class, () -> arena.allocate(1, 3));
        }
    }

    @Test
    void shouldSeeCreatorWritesWhenAttachedThroughDup() {
        try (HugepageArena creator = HugepageArena.create("test-attach", 4096, false)) {
            int passed = Unistd.dup(creator.fd());
            try (HugepageArena attached = HugepageArena.attach(passed, 4096)) {
                assertFalse(attached.hugepages());
                creator.segment().set(JAVA_LONG, 128, 0xFEEDL);
                assertEquals(0xFEEDL, attached.segment().get(JAVA_LONG, 128));
            }
        }
    }

    @Test
    void shouldRejectSizeWhenLargerThanAttachedFile() {
        int fd = Memfd.memfd_create("test-small", Memfd.MFD_CLOEXEC);
        try {
            Unistd.ftruncate(fd, 4096);
            assertThrows(IllegalArgumentException.class, () -> HugepageArena.attach(fd, 8192));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldRefuseTruncationWhenPeerHoldsTheFd() {
        try (HugepageArena arena = HugepageArena.create("test-seal", 4096, false)) {
            ErrnoException e = assertThrows(ErrnoException.class, () -> Unistd.ftruncate(arena.fd(), 0));
            assertEquals(Errno.EPERM, e.errno());
            assertEquals(
                    Fcntl.F_SEAL_SHRINK | Fcntl.F_SEAL_GROW | Fcntl.F_SEAL_SEAL,
                    Fcntl.fcntl(arena.fd(), Fcntl.F_GET_SEALS, 0));
        }
    }
}
