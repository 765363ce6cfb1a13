package io.vhostd.vhost.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserCodec;
import io.vhostd.vhost.proto.VhostUserHeader;
import io.vhostd.vhost.proto.VhostUserPayload;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The front-end side of a test connection (what QEMU does): sends requests with fds, reads replies. Every wait is on
 * the socket; nothing sleeps.
 */
public final class TestFrontEnd implements AutoCloseable {
    private final int socketFd;
    private final VhostUserConnection connection;
    private boolean closed;

    /** A front-end on {@code socketFd}, a connected stream socket (taken: {@link #close()} closes it). */
    public TestFrontEnd(int socketFd) {
        this.socketFd = socketFd;
        this.connection = new VhostUserConnection(socketFd);
    }

    /** The connection's socket. */
    public int socketFd() {
        return socketFd;
    }

    /** Sends a request; {@code payload} may be null. */
    public void send(VhostUserRequest request, boolean needReply, VhostUserPayload payload, int... fds) {
        int size = payload == null ? 0 : payload.sizeBytes();
        connection.send(VhostUserHeader.request(request.id(), needReply, size), payload, fds);
    }

    /** Sends a header with any values and raw payload bytes (may be shorter or longer than the header says). */
    public void sendRaw(int request, int flags, long size, byte[] payload, int... fds) {
        byte[] bytes = new byte[VhostUserHeader.SIZE_BYTES + payload.length];
        MemorySegment seg = MemorySegment.ofArray(bytes);
        seg.set(ValueLayout.JAVA_INT_UNALIGNED, 0, request);
        seg.set(ValueLayout.JAVA_INT_UNALIGNED, 4, flags);
        seg.set(ValueLayout.JAVA_INT_UNALIGNED, 8, (int) size);
        MemorySegment.copy(MemorySegment.ofArray(payload), 0, seg, VhostUserHeader.SIZE_BYTES, payload.length);
        int offset = 0;
        int chunk = VhostUserCodec.MESSAGE_BUFFER_SIZE_BYTES;
        while (offset < bytes.length) {
            int n = Math.min(chunk, bytes.length - offset);
            byte[] part = new byte[n];
            System.arraycopy(bytes, offset, part, 0, n);
            connection.sendRaw(part, offset == 0 ? fds : new int[0]);
            offset += n;
        }
    }

    /** The next message from the back-end; fails on end of stream. */
    public VhostUserMessage receive() {
        VhostUserMessage msg = connection.receive();
        assertNotNull(msg, "back-end closed the connection");
        return msg;
    }

    /** The next message, which must be the reply to {@code request}; its payload is copied out. */
    public byte[] reply(VhostUserRequest request) {
        return reply(request.id());
    }

    /** The next message, which must be the reply to request {@code requestId}; its payload is copied out. */
    public byte[] reply(int requestId) {
        VhostUserMessage msg = receive();
        assertEquals(requestId, msg.header().request(), "reply to " + VhostUserRequest.nameOf(requestId));
        assertTrue(msg.header().isReply(), "REPLY flag");
        assertEquals(VhostUserHeader.VHOST_USER_VERSION, msg.header().version());
        assertEquals(0, msg.fds().length, "no fds in the reply");
        return msg.payload().toArray(ValueLayout.JAVA_BYTE);
    }

    /** The next message, which must be the reply to {@code request}, with its fds (the caller owns them). */
    VhostUserMessage replyWithFds(VhostUserRequest request) {
        VhostUserMessage msg = receive();
        assertEquals(request.id(), msg.header().request(), "reply to " + request);
        assertTrue(msg.header().isReply(), "REPLY flag");
        return msg;
    }

    /** The reply's u64. */
    public long replyU64(int requestId) {
        byte[] payload = reply(requestId);
        assertEquals(VhostUserU64.SIZE_BYTES, payload.length, "u64 reply");
        return MemorySegment.ofArray(payload).get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
    }

    /** A {@code GET_*} with a u64 reply. */
    public long getU64(VhostUserRequest request) {
        send(request, false, null);
        return replyU64(request.id());
    }

    /** Sends with {@code NEED_REPLY} and returns the {@code REPLY_ACK} status (0 success). */
    public long ack(VhostUserRequest request, VhostUserPayload payload, int... fds) {
        send(request, true, payload, fds);
        return replyU64(request.id());
    }

    /**
     * A GET_FEATURES round trip: everything sent before has been handled (and any reply to it read) when it returns.
     */
    public long sync() {
        return getU64(VhostUserRequest.VHOST_USER_GET_FEATURES);
    }

    /** Half-closes the socket: the back-end sees end of stream after what was sent. */
    public void shutdownWrite() {
        Socket.shutdown(socketFd, Socket.SHUT_WR);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        connection.close();
        Unistd.close(socketFd);
    }
}
