package io.vhostd.shm.control;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * One end of the control channel: a connected {@code SOCK_SEQPACKET} socket, one JSON {@link ControlMessage} per
 * packet with its fds. {@link #send} may be called from any thread; {@link #receive} from one reader thread.
 */
public final class ControlChannel implements AutoCloseable {
    /** Largest packet either side sends or accepts. */
    public static final int MAX_MESSAGE_BYTES = 64 * 1024;
    /** Most fds one message carries (an AddController with 64 queues: 1 + 2 × 64). */
    public static final int MAX_FDS = 160;

    private static final ObjectMapper MAPPER = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, true);

    private final int fd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment sendBuffer = arena.allocate(MAX_MESSAGE_BYTES);
    private final MemorySegment receiveBuffer = arena.allocate(MAX_MESSAGE_BYTES);
    private volatile boolean closed;
    /** When the last {@link #receive} had the packet (System.nanoTime), before decoding; the receiving thread's. */
    private long lastReceivedNs;

    /** Wraps a connected SOCK_SEQPACKET fd; the channel owns it from now on. */
    public ControlChannel(int fd) {
        this.fd = fd;
    }

    /** Connects to the master's control socket at {@code path}. */
    public static ControlChannel connect(String path) {
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_SEQPACKET | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.connect(fd, path);
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
        return new ControlChannel(fd);
    }

    public int fd() {
        return fd;
    }

    /** A message and the fds that came with it (the receiver owns and must close or keep the fds). */
    public record Incoming(ControlMessage message, int[] fds) {}

    /**
     * Sends one message with its fds (the fds stay open on this side).
     *
     * @throws IllegalArgumentException if the encoded message exceeds {@link #MAX_MESSAGE_BYTES}
     */
    public synchronized void send(ControlMessage message, int... fds) {
        byte[] json;
        try {
            json = MAPPER.writeValueAsBytes(message);
        } catch (IOException e) {
            throw new IllegalStateException("cannot encode " + message, e);
        }
        if (json.length > MAX_MESSAGE_BYTES) {
            throw new IllegalArgumentException("control message of " + json.length + " bytes exceeds the maximum");
        }
        if (closed) {
            throw new IllegalStateException("control channel closed");
        }
        MemorySegment.copy(json, 0, sendBuffer, ValueLayout.JAVA_BYTE, 0, json.length);
        Socket.sendmsg(fd, sendBuffer, json.length, fds);
    }

    /**
     * When the last {@link #receive} on the calling thread got its packet from the kernel (System.nanoTime), before
     * decoding it: a handover's log tells the wake-up from the decoding.
     */
    public long lastReceivedNs() {
        return lastReceivedNs;
    }

    /**
     * Blocks for the next message. Returns null at end of stream (the peer closed or died).
     *
     * @throws ControlProtocolException if the packet is not a valid message (its fds are closed)
     */
    public Incoming receive() {
        Socket.Received received = Socket.recvmsg(fd, receiveBuffer, MAX_MESSAGE_BYTES, MAX_FDS);
        lastReceivedNs = System.nanoTime();
        if (received.bytes() == 0 && received.fds().length == 0) {
            return null;
        }
        byte[] json = receiveBuffer.asSlice(0, received.bytes()).toArray(ValueLayout.JAVA_BYTE);
        try {
            if (received.truncatedFds()) {
                throw new ControlProtocolException("message carried more than " + MAX_FDS + " fds");
            }
            ControlMessage message = MAPPER.readValue(json, ControlMessage.class);
            if (message == null) {
                throw new ControlProtocolException("empty control message");
            }
            return new Incoming(message, received.fds());
        } catch (IOException | ControlProtocolException e) {
            for (int f : received.fds()) {
                Unistd.close(f);
            }
            if (e instanceof ControlProtocolException cpe) {
                throw cpe;
            }
            throw new ControlProtocolException("malformed control message: " + e.getMessage());
        }
    }

    /**
     * Sends and receives each of {@code samples} through a scratch socketpair, round after round, until {@code rounds}
     * rounds or {@code budgetNs} nanoseconds have passed (issue #4). A handover's messages are sent a few times in a
     * process's life, so their codec would run interpreted while a guest waits: a control message took ~1 ms to encode
     * and decode in its second use, ~15 µs once the JIT compiled the codec (docs/benchmarks.md). Returns the round trips
     * made.
     *
     * @throws IllegalStateException if a sample does not survive the round trip (a codec bug)
     */
    public static int warmUp(java.util.List<ControlMessage> samples, int rounds, long budgetNs) {
        return warmUp(samples, rounds, budgetNs, () -> false);
    }

    /** {@link #warmUp(java.util.List, int, long)} that also ends, after a round, once {@code stop} says so. */
    public static int warmUp(
            java.util.List<ControlMessage> samples,
            int rounds,
            long budgetNs,
            java.util.function.BooleanSupplier stop) {
        long deadlineNs = System.nanoTime() + budgetNs;
        int[] pair = Socket.socketpair(Socket.SOCK_SEQPACKET);
        int trips = 0;
        try (ControlChannel a = new ControlChannel(pair[0]);
                ControlChannel b = new ControlChannel(pair[1])) {
            for (int round = 0; round < rounds && System.nanoTime() < deadlineNs && !stop.getAsBoolean(); round++) {
                for (ControlMessage m : samples) {
                    a.send(m);
                    Incoming in = b.receive();
                    if (in == null || !m.equals(in.message())) {
                        throw new IllegalStateException("warm-up: " + m + " came back as " + in);
                    }
                    trips++;
                }
            }
        }
        return trips;
    }

    /**
     * Shuts down the receiving side only: messages already queued are still returned by {@link #receive}, then end of
     * stream; sending still works while the peer's socket exists.
     */
    public void shutdownInput() {
        shutdown(Socket.SHUT_RD);
    }

    /** Shuts the socket down so a blocked {@link #receive} returns. */
    public void shutdown() {
        shutdown(Socket.SHUT_RDWR);
    }

    private void shutdown(int how) {
        try {
            Socket.shutdown(fd, how);
        } catch (RuntimeException ignored) {
            // already closed by the peer: nothing to wake
        }
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            Unistd.close(fd);
            arena.close();
        }
    }

    /** A peer sent something that is not a valid control message. */
    public static final class ControlProtocolException extends RuntimeException {
        public ControlProtocolException(String message) {
            super(message);
        }
    }
}
