package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(10)
class SocketTest {
    private final Arena arena = Arena.ofConfined();

    @TempDir
    Path dir;

    @AfterEach
    void closeArena() {
        arena.close();
    }

    private MemorySegment bytes(String text) {
        return arena.allocateFrom(text);
    }

    @Test
    void shouldPassLiveFdsWhenSentOverSocketpair() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        int eventfd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        int memfd = Memfd.memfd_create("passed", Memfd.MFD_CLOEXEC);
        int[] pipeLike = Socket.socketpair(Socket.SOCK_STREAM);
        int[] received = new int[0];
        try {
            Unistd.ftruncate(memfd, 4096);
            MemorySegment message = bytes("hello fds");
            Socket.sendmsg(pair[0], message, message.byteSize(), eventfd, memfd, pipeLike[0]);

            MemorySegment buf = arena.allocate(64);
            Socket.Received r = Socket.recvmsg(pair[1], buf, 64, 8);
            received = r.fds();
            assertEquals(message.byteSize(), r.bytes());
            assertEquals("hello fds", buf.getString(0));
            assertFalse(r.truncatedFds());
            assertEquals(3, received.length);

            // write through the passed eventfd, read on the original
            Eventfd.eventfd_write(received[0], 42);
            assertEquals(42, Eventfd.eventfd_read(eventfd));
            // the passed memfd maps the same memory
            MemorySegment viaOriginal =
                    Mman.mmap(4096, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, memfd, 0, arena);
            MemorySegment viaPassed =
                    Mman.mmap(4096, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, received[1], 0, arena);
            viaPassed.set(JAVA_LONG, 0, 77L);
            assertEquals(77L, viaOriginal.get(JAVA_LONG, 0));
            // the passed socket end talks to the other end
            Unistd.write(received[2], bytes("x"), 1);
            assertEquals(1, Unistd.read(pipeLike[1], buf, 1));
            // MSG_CMSG_CLOEXEC
            for (int fd : received) {
                assertEquals(Fcntl.FD_CLOEXEC, Fcntl.fcntl(fd, Fcntl.F_GETFD, 0));
            }
        } finally {
            closeAll(received);
            closeAll(pair);
            closeAll(pipeLike);
            Unistd.close(eventfd);
            Unistd.close(memfd);
        }
    }

    @Test
    void shouldCloseArrivedFdsWhenControlDataTruncated() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        int[] sent = new int[8];
        try {
            for (int i = 0; i < sent.length; i++) {
                sent[i] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
            }
            MemorySegment message = bytes("eight");
            Socket.sendmsg(pair[0], message, message.byteSize(), sent);
            MemorySegment buf = arena.allocate(64);
            Socket.Received r = Socket.recvmsg(pair[1], buf, 64, 2);
            assertEquals(message.byteSize(), r.bytes());
            assertTrue(r.truncatedFds());
            assertEquals(0, r.fds().length);
            assertEquals("eight", buf.getString(0));
        } finally {
            closeAll(sent);
            closeAll(pair);
        }
    }

    @Test
    void shouldReportTruncationWhenFdsArriveWithMaxFdsZero() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        int eventfd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try {
            Socket.sendmsg(pair[0], bytes("a"), 1, eventfd);
            Socket.Received r = Socket.recvmsg(pair[1], arena.allocate(8), 8, 0);
            assertEquals(1, r.bytes());
            assertTrue(r.truncatedFds());
        } finally {
            closeAll(pair);
            Unistd.close(eventfd);
        }
    }

    @Test
    void shouldReturnOwnPidWhenPeerCredentialsRead() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        try {
            Socket.Ucred cred = Socket.getpeercred(pair[0]);
            assertEquals(Unistd.getpid(), cred.pid());
            assertEquals(ProcessHandle.current().pid(), cred.pid());
        } finally {
            closeAll(pair);
        }
    }

    @Test
    void shouldPreserveMessageBoundariesWhenSeqpacket() {
        int[] pair = Socket.socketpair(Socket.SOCK_SEQPACKET);
        try {
            Socket.sendmsg(pair[0], bytes("12345"), 5);
            Socket.sendmsg(pair[0], bytes("1234567"), 7);
            Socket.sendmsg(pair[0], bytes("1"), 1);
            MemorySegment buf = arena.allocate(64);
            assertEquals(5, Socket.recvmsg(pair[1], buf, 64, 4).bytes());
            assertEquals(7, Socket.recvmsg(pair[1], buf, 64, 4).bytes());
            assertEquals(1, Socket.recvmsg(pair[1], buf, 64, 4).bytes());
        } finally {
            closeAll(pair);
        }
    }

    @Test
    void shouldReturnMinusOneWhenNonBlockingSocketEmpty() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM | Socket.SOCK_NONBLOCK);
        try {
            Socket.Received r = Socket.recvmsg(pair[1], arena.allocate(8), 8, 1);
            assertEquals(-1, r.bytes());
            assertEquals(0, r.fds().length);
        } finally {
            closeAll(pair);
        }
    }

    @Test
    void shouldCollectFdsFromEveryChunkWhenReceivingFully() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        int first = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        int second = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        int[] received = new int[0];
        try {
            Socket.sendmsg(pair[0], bytes("abcd"), 4, first);
            Socket.sendmsg(pair[0], bytes("efgh"), 4, second);
            MemorySegment buf = arena.allocate(8);
            Socket.ReceivedFully r = Socket.recvFully(pair[1], buf, 8, 4);
            received = r.fds();
            assertFalse(r.eof());
            assertFalse(r.truncatedFds());
            assertEquals(2, received.length);
            byte[] data = buf.toArray(JAVA_BYTE);
            assertArrayEquals("abcdefgh".getBytes(java.nio.charset.StandardCharsets.US_ASCII), data);
        } finally {
            closeAll(received);
            closeAll(pair);
            Unistd.close(first);
            Unistd.close(second);
        }
    }

    @Test
    void shouldReportEofWhenPeerClosedBeforeFirstByte() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        try {
            Socket.shutdown(pair[0], Socket.SHUT_WR);
            Socket.ReceivedFully r = Socket.recvFully(pair[1], arena.allocate(8), 8, 0);
            assertTrue(r.eof());
        } finally {
            closeAll(pair);
        }
    }

    @Test
    void shouldThrowEconnresetWhenPeerClosedMidMessage() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        try {
            Socket.sendmsg(pair[0], bytes("abc"), 3);
            Socket.shutdown(pair[0], Socket.SHUT_WR);
            ErrnoException e =
                    assertThrows(ErrnoException.class, () -> Socket.recvFully(pair[1], arena.allocate(8), 8, 0));
            assertEquals(Errno.ECONNRESET, e.errno());
        } finally {
            closeAll(pair);
        }
    }

    @Test
    void shouldThrowEpipeWhenPeerGone() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        try {
            Unistd.close(pair[1]);
            ErrnoException e = assertThrows(ErrnoException.class, () -> Socket.sendmsg(pair[0], bytes("x"), 1));
            assertEquals(Errno.EPIPE, e.errno());
        } finally {
            Unistd.close(pair[0]);
        }
    }

    @Test
    void shouldConnectAndAcceptWhenBoundToPath() {
        String path = dir.resolve("sock").toString();
        int listener = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        int client = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        int server = -1;
        try {
            Socket.bind(listener, path);
            Socket.listen(listener, 4);
            Socket.connect(client, path);
            server = Socket.accept(listener);
            assertTrue(server >= 0);
            assertEquals(Unistd.getpid(), Socket.getpeercred(server).pid());
            Socket.sendmsg(client, bytes("ping"), 4);
            MemorySegment buf = arena.allocate(4);
            assertFalse(Socket.recvFully(server, buf, 4, 0).eof());
            Fcntl.setNonBlocking(listener, true);
            assertEquals(-1, Socket.accept(listener));
            Socket.setsockoptInt(client, Socket.SOL_SOCKET, Socket.SO_SNDBUF, 65536);
            assertTrue(Socket.getsockoptInt(client, Socket.SOL_SOCKET, Socket.SO_SNDBUF) >= 65536);
            Unistd.unlink(path);
        } finally {
            if (server >= 0) {
                Unistd.close(server);
            }
            Unistd.close(client);
            Unistd.close(listener);
        }
    }

    @Test
    void shouldRejectPathWhenLongerThanSunPath() {
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try {
            assertThrows(IllegalArgumentException.class, () -> Socket.bind(fd, "/tmp/" + "x".repeat(103)));
        } finally {
            Unistd.close(fd);
        }
    }

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            Unistd.close(fd);
        }
    }
}
