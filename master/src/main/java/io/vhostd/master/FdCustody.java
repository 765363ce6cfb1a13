package io.vhostd.master;

import io.vhostd.shm.linux.Unistd;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The master's copies of the fds a slave holds (DESIGN §3): vhost-user connections, guest memory regions,
 * kick/call/err eventfds. Holding them keeps the kernel objects alive if the slave dies, so a replacement slave can
 * be handed the same fds (issue #4). Thread-safe.
 */
public final class FdCustody implements AutoCloseable {
    /** What one held fd is. {@code what}: connection, kick, call, err, mem, backend_req, listen, qpair_sq, qpair_cq. */
    public record Key(String controller, String what, int index) {}

    private final Map<Key, Integer> fds = new HashMap<>();

    /** Keeps {@code fd} under {@code key}; a previous fd under the same key is closed. The custody owns {@code fd}. */
    public synchronized void hold(Key key, int fd) {
        Integer previous = fds.put(key, fd);
        if (previous != null && previous != fd) {
            Unistd.close(previous);
        }
    }

    /** Closes and forgets the fd under {@code key}; false if none. */
    public synchronized boolean release(Key key) {
        Integer fd = fds.remove(key);
        if (fd == null) {
            return false;
        }
        Unistd.close(fd);
        return true;
    }

    /** The fd held under {@code key}, or -1. */
    public synchronized int get(Key key) {
        return fds.getOrDefault(key, -1);
    }

    /** Closes every fd held for {@code controller} whose kind is one of {@code whats}. */
    public synchronized int releaseAll(String controller, List<String> whats) {
        List<Key> keys = new ArrayList<>();
        for (Key k : fds.keySet()) {
            if (k.controller().equals(controller) && whats.contains(k.what())) {
                keys.add(k);
            }
        }
        keys.forEach(this::release);
        return keys.size();
    }

    /** A snapshot of the fds held for {@code controller} (the custody still owns them). */
    public synchronized Map<Key, Integer> entries(String controller) {
        Map<Key, Integer> out = new HashMap<>();
        // a loop, not a lambda: a rolling upgrade's commit runs this once in a master's life, inside the guest's pause
        for (Map.Entry<Key, Integer> e : fds.entrySet()) {
            if (e.getKey().controller().equals(controller)) {
                out.put(e.getKey(), e.getValue());
            }
        }
        return out;
    }

    public synchronized int size() {
        return fds.size();
    }

    @Override
    public synchronized void close() {
        fds.values().forEach(Unistd::close);
        fds.clear();
    }
}
