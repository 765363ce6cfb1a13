package io.vhostd.slave;

import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/** The slave's side of the control channel: sends requests and matches the master's acks to them. */
final class MasterLink {
    private static final long ACK_TIMEOUT_MS = 10_000;

    /** The master's channel; replaced when a restarted master re-adopts this slave (issue #4). */
    private volatile ControlChannel channel;

    private final AtomicLong nextRequestId = new AtomicLong(1);
    private final Map<Long, CompletableFuture<String>> pending = new ConcurrentHashMap<>();

    MasterLink(ControlChannel channel) {
        this.channel = channel;
    }

    /** Issue #4 master restart: from now on messages go to a restarted master over {@code next}. */
    void reconnect(ControlChannel next) {
        this.channel = next;
    }

    void send(ControlMessage message, int... fds) {
        channel.send(message, fds);
    }

    long nextRequestId() {
        return nextRequestId.getAndIncrement();
    }

    /**
     * Sends a request and waits for its ack.
     *
     * @throws IllegalStateException with the master's error, or on timeout
     */
    void request(long requestId, ControlMessage message, int... fds) {
        CompletableFuture<String> ack = new CompletableFuture<>();
        pending.put(requestId, ack);
        try {
            channel.send(message, fds);
            String error = ack.get(ACK_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            if (error != null) {
                throw new IllegalStateException("master refused: " + error);
            }
        } catch (TimeoutException e) {
            throw new IllegalStateException("master did not answer within " + ACK_TIMEOUT_MS + " ms");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted");
        } catch (java.util.concurrent.ExecutionException e) {
            throw new IllegalStateException(e.getCause().getMessage());
        } finally {
            pending.remove(requestId);
        }
    }

    void acked(ControlMessage.Ack ack) {
        CompletableFuture<String> f = pending.get(ack.requestId());
        if (f != null) {
            f.complete(ack.error());
        }
    }

    void failAll(String why) {
        pending.values().forEach(f -> f.completeExceptionally(new IllegalStateException(why)));
    }
}
