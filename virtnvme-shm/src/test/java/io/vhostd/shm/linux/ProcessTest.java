package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class ProcessTest {
    @Test
    void shouldOpenPidfdWhenGivenOwnPid() {
        int pidfd = Pidfd.pidfd_open(Unistd.getpid(), 0);
        try {
            assertTrue(pidfd >= 0);
            assertEquals(Fcntl.FD_CLOEXEC, Fcntl.fcntl(pidfd, Fcntl.F_GETFD, 0));
            // a pidfd turns readable only when the process exits: we are alive
            assertEquals(0, Poll.poll(pidfd, Poll.POLLIN, 0));
            Pidfd.pidfd_send_signal(pidfd, 0);
        } finally {
            Unistd.close(pidfd);
        }
    }

    @Test
    void shouldThrowEsrchWhenProcessDoesNotExist() {
        int noSuchPid = Integer.MAX_VALUE;
        assertEquals(
                Errno.ESRCH,
                assertThrows(ErrnoException.class, () -> Signal.kill(noSuchPid, 0))
                        .errno());
        assertEquals(
                Errno.ESRCH,
                assertThrows(ErrnoException.class, () -> Pidfd.pidfd_open(noSuchPid, 0))
                        .errno());
        assertEquals(0, Signal.kill(Unistd.getpid(), 0));
    }

    @Test
    void shouldBecomeReadableWhenChildExits() throws Exception {
        Process child = new ProcessBuilder("true").start();
        int pidfd;
        try {
            pidfd = Pidfd.pidfd_open((int) child.pid(), 0);
        } catch (ErrnoException e) {
            // the child may already be reaped by the JDK; then there is nothing left to watch
            assertEquals(Errno.ESRCH, e.errno());
            return;
        }
        try {
            // POLLIN, plus POLLHUP on kernels that also report the reaped state
            assertEquals(Poll.POLLIN, Poll.poll(pidfd, Poll.POLLIN, 5000) & Poll.POLLIN);
        } finally {
            Unistd.close(pidfd);
            child.waitFor();
        }
    }
}
