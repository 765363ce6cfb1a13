package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** {@link Socket#getsockname}, {@link Socket#sendto} and the socket-kind options a listener handed over is checked by. */
@Timeout(10)
class SocketNameTest {
    @TempDir
    Path dir;

    @Test
    void shouldReturnBoundPathWhenSocketHasOne() {
        String path = dir.resolve("listen.sock").toString();
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.bind(fd, path);
            Socket.listen(fd, 1);
            assertEquals(path, Socket.getsockname(fd));
            assertEquals(Socket.AF_UNIX, Socket.getsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_DOMAIN));
            assertEquals(Socket.SOCK_STREAM, Socket.getsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_TYPE));
            assertEquals(1, Socket.getsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_ACCEPTCONN));
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldReturnNulPrefixedNameWhenAbstractAndEmptyWhenUnnamed() {
        String name = "\0vhostd-test-name-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
        int bound = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        int unnamed = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.bind(bound, name);
            assertEquals(name, Socket.getsockname(bound));
            assertEquals("", Socket.getsockname(unnamed));
            assertEquals(0, Socket.getsockoptInt(unnamed, Socket.SOL_SOCKET, Socket.SO_ACCEPTCONN));
        } finally {
            Unistd.close(bound);
            Unistd.close(unnamed);
        }
    }

    @Test
    void shouldThrowEnotsockWhenFdIsNoSocket() {
        int efd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try {
            ErrnoException e = assertThrows(ErrnoException.class, () -> Socket.getsockname(efd));
            assertEquals(Errno.ENOTSOCK, e.errno());
        } finally {
            Unistd.close(efd);
        }
    }

    @Test
    void shouldReturnMinusOneWhenNonBlockingSendFindsQueueFull() {
        String path = dir.resolve("full.sock").toString();
        int receiver = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        int sender = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        try (Arena arena = Arena.ofConfined()) {
            Socket.bind(receiver, path);
            MemorySegment data = arena.allocate(1024);
            long sent = 0;
            int datagrams = 0;
            // the receiver never reads: its queue (net.unix.max_dgram_qlen datagrams or SO_RCVBUF bytes) fills up
            while (datagrams < 100_000 && sent >= 0) {
                sent = Socket.sendto(sender, data, data.byteSize(), Socket.MSG_DONTWAIT, path);
                datagrams++;
            }
            assertEquals(-1, sent);
        } finally {
            Unistd.close(receiver);
            Unistd.close(sender);
        }
    }
}
