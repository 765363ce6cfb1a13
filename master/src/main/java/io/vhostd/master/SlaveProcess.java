package io.vhostd.master;

import io.vhostd.master.engine.RegionTable;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Unistd;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A running slave as the master sees it: the child process, its control channel, the guest memory it registered,
 * and the last session state it reported per controller. The reader thread handles the slave's requests; every
 * message is validated (the slave is a peer process).
 */
public final class SlaveProcess {
    private static final System.Logger LOG = System.getLogger(SlaveProcess.class.getName());

    private final String slaveId;
    private final Process process;
    private final ControlChannel channel;
    private final RegionTable regions;
    private final FdCustody custody;
    private final Map<String, ControllerRuntime> controllers;
    private final Map<String, ControlMessage.SessionState> sessions = new ConcurrentHashMap<>();
    private final Map<String, java.util.concurrent.CompletableFuture<Void>> listening = new ConcurrentHashMap<>();
    private final Map<String, java.util.concurrent.CompletableFuture<String>> adopted = new ConcurrentHashMap<>();
    private final Thread reader;

    SlaveProcess(
            String slaveId,
            Process process,
            ControlChannel channel,
            RegionTable regions,
            FdCustody custody,
            Map<String, ControllerRuntime> controllers) {
        this.slaveId = slaveId;
        this.process = process;
        this.channel = channel;
        this.regions = regions;
        this.custody = custody;
        this.controllers = controllers;
        this.reader =
                Thread.ofPlatform().name("slave-ctl-" + slaveId).daemon(true).unstarted(this::readLoop);
    }

    void start() {
        reader.start();
    }

    public String slaveId() {
        return slaveId;
    }

    public long pid() {
        return process.pid();
    }

    public Process process() {
        return process;
    }

    public ControlChannel channel() {
        return channel;
    }

    public RegionTable regions() {
        return regions;
    }

    /** The last session state the slave reported for {@code controller}, or null. */
    public ControlMessage.SessionState session(String controller) {
        return sessions.get(controller);
    }

    /** Completes when the slave reported that it accepts connections for {@code controller}. */
    public java.util.concurrent.CompletableFuture<Void> listening(String controller) {
        return listening.computeIfAbsent(controller, k -> new java.util.concurrent.CompletableFuture<>());
    }

    /** Completes with the slave's answer to {@code adopt_session} for {@code controller} (null: adopted). */
    public java.util.concurrent.CompletableFuture<String> adopted(String controller) {
        return adopted.computeIfAbsent(controller, k -> new java.util.concurrent.CompletableFuture<>());
    }

    private void readLoop() {
        try {
            while (true) {
                ControlChannel.Incoming in;
                try {
                    in = channel.receive();
                } catch (ControlChannel.ControlProtocolException e) {
                    LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": " + e.getMessage());
                    continue;
                }
                if (in == null) {
                    return;
                }
                handle(in.message(), in.fds());
            }
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, "slave " + slaveId + " control channel closed: " + e.getMessage());
        } finally {
            listening.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
            adopted.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
        }
    }

    private void handle(ControlMessage message, int[] fds) {
        switch (message) {
            case ControlMessage.RegisterRegion m -> {
                String error = null;
                if (fds.length != 1) {
                    error = "register_region needs exactly 1 fd, got " + fds.length;
                    closeAll(fds);
                } else {
                    try {
                        regions.register(m.regionId(), fds[0], m.sizeBytes(), m.mmapOffsetBytes());
                    } catch (RuntimeException e) {
                        Unistd.close(fds[0]);
                        error = e.getMessage();
                    }
                }
                if (error != null) {
                    LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": " + error);
                }
                channel.send(new ControlMessage.Ack(m.requestId(), error));
            }
            case ControlMessage.UnregisterRegion m -> {
                closeAll(fds);
                boolean found = regions.unregister(m.regionId());
                channel.send(new ControlMessage.Ack(m.requestId(), found ? null : "no region " + m.regionId()));
            }
            case ControlMessage.Custody m -> {
                if (fds.length != 1 || !controllers.containsKey(m.controller())) {
                    LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": bad custody message " + m);
                    closeAll(fds);
                    return;
                }
                custody.hold(new FdCustody.Key(m.controller(), m.what(), m.index()), fds[0]);
            }
            case ControlMessage.CustodyRelease m -> {
                closeAll(fds);
                custody.release(new FdCustody.Key(m.controller(), m.what(), m.index()));
            }
            case ControlMessage.SessionState m -> {
                closeAll(fds);
                if (controllers.containsKey(m.controller())) {
                    sessions.put(m.controller(), m);
                }
            }
            case ControlMessage.SessionAdopted m -> {
                closeAll(fds);
                if (controllers.containsKey(m.controller())) {
                    adopted(m.controller()).complete(m.error());
                }
            }
            case ControlMessage.ControllerListening m -> {
                closeAll(fds);
                if (controllers.containsKey(m.name())) {
                    listening(m.name()).complete(null);
                    LOG.log(System.Logger.Level.INFO, "controller " + m.name() + " served by slave " + slaveId);
                }
            }
            default -> {
                closeAll(fds);
                LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": unexpected " + message);
            }
        }
    }

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            Unistd.close(fd);
        }
    }

    /** Asks the slave to exit and waits up to {@code timeoutMs}; kills it after that. */
    void stop(String reason, long timeoutMs) {
        try {
            channel.send(new ControlMessage.Shutdown(reason));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, "slave " + slaveId + " already gone: " + e.getMessage());
        }
        try {
            if (!process.waitFor(timeoutMs, java.util.concurrent.TimeUnit.MILLISECONDS)) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "slave " + slaveId + " did not exit in " + timeoutMs + " ms: killing");
                process.destroyForcibly();
                process.waitFor(timeoutMs, java.util.concurrent.TimeUnit.MILLISECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroyForcibly();
        }
        channel.shutdown();
        try {
            reader.join(timeoutMs);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        channel.close();
    }

    /** After the process died: ends the reader and closes the control channel. */
    void reap() {
        channel.shutdown();
        try {
            reader.join(1_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        channel.close();
    }

    /** All custody kinds that belong to a slave session (not the master's own listening socket). */
    static final List<String> SESSION_FDS = List.of("connection", "kick", "call", "err", "mem", "backend_req");
}
