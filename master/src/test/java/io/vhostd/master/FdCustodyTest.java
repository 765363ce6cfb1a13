package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link FdCustody} over real eventfds. Whether an fd is still open is asked right after the operation under test
 * (before this test opens another fd, so a closed number cannot have been reused by it).
 */
@Timeout(10)
class FdCustodyTest {
    private static final FdCustody.Key KICK_0 = new FdCustody.Key("vhost.0", "kick", 0);
    private static final FdCustody.Key KICK_1 = new FdCustody.Key("vhost.0", "kick", 1);
    private static final FdCustody.Key CALL_0 = new FdCustody.Key("vhost.0", "call", 0);
    private static final FdCustody.Key MEM_7 = new FdCustody.Key("vhost.0", "mem", 7);
    private static final FdCustody.Key OTHER_KICK_0 = new FdCustody.Key("vhost.1", "kick", 0);

    /** Every fd a test opens goes into this custody, which closes it (at the latest in {@link #tearDown()}). */
    private final FdCustody custody = new FdCustody();

    @AfterEach
    void tearDown() {
        custody.close();
    }

    private static int newFd() {
        return Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
    }

    private static boolean isOpen(int fd) {
        try {
            Fcntl.fcntl(fd, Fcntl.F_GETFD, 0);
            return true;
        } catch (ErrnoException e) {
            assertEquals(Errno.EBADF, e.errno(), "F_GETFD on fd " + fd);
            return false;
        }
    }

    @Test
    void shouldKeepFdOpenWhenHeld() {
        int fd = newFd();

        custody.hold(KICK_0, fd);

        assertEquals(fd, custody.get(KICK_0));
        assertEquals(1, custody.size());
        assertTrue(isOpen(fd));
        assertEquals(-1, custody.get(KICK_1), "another index is another key");
    }

    @Test
    void shouldClosePreviousFdWhenKeyHeldAgain() {
        int first = newFd();
        int second = newFd();
        custody.hold(KICK_0, first);

        custody.hold(KICK_0, second);

        assertFalse(isOpen(first), "the replaced fd is closed");
        assertTrue(isOpen(second));
        assertEquals(second, custody.get(KICK_0));
        assertEquals(1, custody.size());
    }

    @Test
    void shouldKeepFdOpenWhenSameFdHeldTwice() {
        int fd = newFd();
        custody.hold(KICK_0, fd);

        custody.hold(KICK_0, fd);

        assertTrue(isOpen(fd));
        assertEquals(fd, custody.get(KICK_0));
        assertEquals(1, custody.size());
    }

    @Test
    void shouldCloseAndForgetFdWhenReleased() {
        int kick = newFd();
        int call = newFd();
        custody.hold(KICK_0, kick);
        custody.hold(CALL_0, call);

        assertTrue(custody.release(KICK_0));

        assertFalse(isOpen(kick));
        assertTrue(isOpen(call), "other keys are untouched");
        assertEquals(-1, custody.get(KICK_0));
        assertEquals(1, custody.size());
        assertFalse(custody.release(KICK_0), "second release finds nothing");
        assertFalse(custody.release(MEM_7), "never held");
    }

    @Test
    void shouldReleaseOnlyMatchingKindsOfOneControllerWhenReleaseAll() {
        int kick0 = newFd();
        int kick1 = newFd();
        int call0 = newFd();
        int mem7 = newFd();
        int otherKick0 = newFd();
        custody.hold(KICK_0, kick0);
        custody.hold(KICK_1, kick1);
        custody.hold(CALL_0, call0);
        custody.hold(MEM_7, mem7);
        custody.hold(OTHER_KICK_0, otherKick0);

        int released = custody.releaseAll("vhost.0", List.of("kick", "call"));

        assertEquals(3, released);
        assertFalse(isOpen(kick0));
        assertFalse(isOpen(kick1));
        assertFalse(isOpen(call0));
        assertTrue(isOpen(mem7), "kind not listed");
        assertTrue(isOpen(otherKick0), "other controller");
        assertEquals(2, custody.size());
        assertEquals(mem7, custody.get(MEM_7));
        assertEquals(otherKick0, custody.get(OTHER_KICK_0));
        assertEquals(0, custody.releaseAll("vhost.0", List.of("kick")), "nothing left to release");
        assertEquals(0, custody.releaseAll("vhost.9", List.of("kick", "call", "mem")), "unknown controller");
    }

    @Test
    void shouldCloseEveryFdWhenClosed() {
        int kick0 = newFd();
        int mem7 = newFd();
        int otherKick0 = newFd();
        custody.hold(KICK_0, kick0);
        custody.hold(MEM_7, mem7);
        custody.hold(OTHER_KICK_0, otherKick0);

        custody.close();

        assertFalse(isOpen(kick0));
        assertFalse(isOpen(mem7));
        assertFalse(isOpen(otherKick0));
        assertEquals(0, custody.size());
        assertEquals(-1, custody.get(KICK_0));
    }
}
