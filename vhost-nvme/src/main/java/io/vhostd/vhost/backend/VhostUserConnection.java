package io.vhostd.vhost.backend;

import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserCodec;
import io.vhostd.vhost.proto.VhostUserHeader;
import io.vhostd.vhost.proto.VhostUserPayload;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Message I/O on a vhost-user stream socket: one message at a time into a buffer allocated once, descriptors from
 * {@code SCM_RIGHTS}. Used by the back-end for requests and replies, and by tests for the front-end side. Not
 * thread-safe; it does not own the socket (closing the connection frees only its buffers).
 *
 * <p>Framing never trusts the peer: a payload larger than {@link VhostUserCodec#MAX_PAYLOAD_SIZE_BYTES} is read and
 * discarded (so the stream stays in step), descriptors beyond {@link #RECEIVE_FD_CAPACITY} make the kernel truncate
 * the control data and all of them are closed.
 */
public final class VhostUserConnection implements AutoCloseable {
    /**
     * Descriptors accepted per message: more than any legal message carries ({@link
     * VhostUserCodec#MAX_FDS_PER_MESSAGE}) so that extra ones arrive and can be closed deliberately.
     */
    public static final int RECEIVE_FD_CAPACITY = 32;

    private static final System.Logger LOG = System.getLogger(VhostUserConnection.class.getName());
    private static final int[] NO_FDS = new int[0];

    private final int socketFd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment receiveBuffer;
    private final MemorySegment receivePayload;
    private final MemorySegment sendBuffer;

    /** @param socketFd a connected {@code AF_UNIX} stream socket (blocking or not; I/O waits either way) */
    public VhostUserConnection(int socketFd) {
        this.socketFd = socketFd;
        receiveBuffer = arena.allocate(VhostUserCodec.MESSAGE_BUFFER_SIZE_BYTES, Long.BYTES);
        receivePayload = receiveBuffer.asSlice(VhostUserHeader.SIZE_BYTES);
        sendBuffer = arena.allocate(VhostUserCodec.MESSAGE_BUFFER_SIZE_BYTES, Long.BYTES);
    }

    /** The socket. */
    public int socketFd() {
        return socketFd;
    }

    /**
     * Blocks until one whole message has arrived.
     *
     * @return the message, or {@code null} when the peer closed the connection (also mid-message: descriptors that
     *     came with the partial message are closed)
     * @throws ErrnoException on a socket error other than the peer going away
     */
    public VhostUserMessage receive() {
        int[] fds = NO_FDS;
        try {
            Socket.ReceivedFully head =
                    Socket.recvFully(socketFd, receiveBuffer, VhostUserHeader.SIZE_BYTES, RECEIVE_FD_CAPACITY);
            if (head.eof()) {
                return null;
            }
            fds = head.fds();
            boolean truncated = head.truncatedFds();
            VhostUserHeader header = VhostUserHeader.decode(receiveBuffer);
            long size = header.sizeBytes();
            if (size > VhostUserCodec.MAX_PAYLOAD_SIZE_BYTES) {
                // keep the stream in step: read the announced bytes, answer the message as an error afterwards
                long remaining = size;
                while (remaining > 0) {
                    long chunk = Math.min(remaining, VhostUserCodec.MAX_PAYLOAD_SIZE_BYTES);
                    Socket.ReceivedFully part = Socket.recvFully(socketFd, receivePayload, chunk, RECEIVE_FD_CAPACITY);
                    if (part.eof()) {
                        LOG.log(System.Logger.Level.WARNING, "peer closed the connection inside a skipped payload");
                        closeAll(fds);
                        return null;
                    }
                    fds = concat(fds, part.fds());
                    truncated |= part.truncatedFds();
                    remaining -= chunk;
                }
                return new VhostUserMessage(header, receivePayload.asSlice(0, 0), fds, truncated, true);
            }
            if (size > 0) {
                Socket.ReceivedFully body = Socket.recvFully(socketFd, receivePayload, size, RECEIVE_FD_CAPACITY);
                if (body.eof()) {
                    LOG.log(System.Logger.Level.WARNING, "peer closed the connection between header and payload");
                    closeAll(fds);
                    return null;
                }
                fds = concat(fds, body.fds());
                truncated |= body.truncatedFds();
            }
            return new VhostUserMessage(header, receivePayload.asSlice(0, size), fds, truncated, false);
        } catch (ErrnoException e) {
            closeAll(fds);
            if (e.errno() == Errno.ECONNRESET) {
                LOG.log(System.Logger.Level.WARNING, "connection ended inside a message: {0}", e.getMessage());
                return null;
            }
            throw e;
        }
    }

    /**
     * Sends one message.
     *
     * @param payload the payload, or {@code null} (the header's size must match)
     * @param fds descriptors to attach (the caller keeps them)
     * @throws ErrnoException e.g. {@code EPIPE} when the peer has gone
     */
    public void send(VhostUserHeader header, VhostUserPayload payload, int... fds) {
        int length = VhostUserCodec.encode(sendBuffer, header, payload);
        Socket.sendmsg(socketFd, sendBuffer, length, fds);
    }

    /**
     * Sends raw bytes (tests: truncated or malformed messages).
     *
     * @param bytes what to send
     * @param fds descriptors to attach
     */
    public void sendRaw(byte[] bytes, int... fds) {
        if (bytes.length > sendBuffer.byteSize()) {
            throw new IllegalArgumentException("at most " + sendBuffer.byteSize() + " bytes: " + bytes.length);
        }
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, sendBuffer, 0, bytes.length);
        Socket.sendmsg(socketFd, sendBuffer, bytes.length, fds);
    }

    /** Frees the buffers; the socket stays open. */
    @Override
    public void close() {
        arena.close();
    }

    private static int[] concat(int[] a, int[] b) {
        if (b.length == 0) {
            return a;
        }
        if (a.length == 0) {
            return b;
        }
        int[] all = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }

    static void closeAll(int[] fds) {
        for (int fd : fds) {
            closeQuietly(fd);
        }
    }

    static void closeQuietly(int fd) {
        if (fd < 0) {
            return;
        }
        try {
            Unistd.close(fd);
        } catch (ErrnoException e) {
            // the descriptor is released either way (close(2) on Linux)
        }
    }
}
