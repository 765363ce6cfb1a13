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
    /** {@code remove_controller} answers (issue #5): controller → the slave's error, null when removed. */
    private final Map<String, java.util.concurrent.CompletableFuture<String>> removed = new ConcurrentHashMap<>();

    private final Thread reader;
    /** {@code release_controller} answers (issue #4 rolling upgrade): controller → the slave's answer. */
    private final Map<String, java.util.concurrent.CompletableFuture<ControlMessage.ControllerReleased>> released =
            new ConcurrentHashMap<>();
    /** {@code prepare_controller} answers (issue #4 rolling upgrade): controller → the slave's error, null = prepared. */
    private final Map<String, java.util.concurrent.CompletableFuture<String>> prepared = new ConcurrentHashMap<>();
    /** When (System.nanoTime, CLOCK_MONOTONIC) each adopted session resumed, as the slave said: controller → ns. */
    private final Map<String, Long> adoptedAtNs = new ConcurrentHashMap<>();

    private volatile String build = "";
    private volatile long startedUnixMs;
    /** Leaving on purpose (rolling upgrade): its exit is not a crash, nothing is handed over when it exits. */
    private volatile boolean retiring;

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

    /**
     * Tells a slave still warming up (before its hello) to stop warming up and say hello at once (issue #4): writes one
     * byte to its stdin, a pipe from the master ({@code SlaveWarmup.hurriedOnStdin} in the slave). A slave that is gone or
     * was not started with such a pipe is left alone.
     */
    static void hurry(Process slave) {
        try {
            java.io.OutputStream stdin = slave.getOutputStream();
            stdin.write('!');
            stdin.flush();
            LOG.log(System.Logger.Level.INFO, "slave (pid " + slave.pid() + ") hurried: a handover waits for it");
        } catch (java.io.IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "cannot hurry slave pid " + slave.pid() + ": " + e);
        }
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

    /** The class path or jar the slave runs from. */
    public String build() {
        return build;
    }

    /** When the master spawned it, ms since the epoch. */
    public long startedUnixMs() {
        return startedUnixMs;
    }

    void buildInfo(String classPath, long spawnedUnixMs) {
        this.build = classPath;
        this.startedUnixMs = spawnedUnixMs;
    }

    /** Whether the master handed this slave's controllers over after its death (once per slave). */
    boolean handedOver() {
        return handedOver;
    }

    void markHandedOver() {
        handedOver = true;
    }

    private volatile boolean handedOver;

    /** Set when the kernel reported the slave's last thread exiting (TASKSTATS), before the process is gone. */
    boolean exiting() {
        return exiting;
    }

    void markExiting() {
        exiting = true;
    }

    private volatile boolean exiting;

    /** True once a rolling upgrade started moving controllers away from this slave (it exits when done). */
    public boolean retiring() {
        return retiring;
    }

    void retire() {
        retiring = true;
    }

    /**
     * Sends {@link ControlMessage.ReleaseController}; the future completes with the slave's {@link
     * ControlMessage.ControllerReleased}, exceptionally if the slave goes away first (issue #4 rolling upgrade).
     */
    java.util.concurrent.CompletableFuture<ControlMessage.ControllerReleased> release(
            String controller, boolean checkOnly) {
        java.util.concurrent.CompletableFuture<ControlMessage.ControllerReleased> answer =
                new java.util.concurrent.CompletableFuture<>();
        release(controller, checkOnly, answer);
        return answer;
    }

    /**
     * {@link #release(String, boolean)} completing {@code answer}, which the caller made with its dependent actions
     * attached: they run on the thread that receives the answer, in the guest's pause, with nothing between the answer
     * and them (a rolling upgrade's commit).
     */
    void release(
            String controller,
            boolean checkOnly,
            java.util.concurrent.CompletableFuture<ControlMessage.ControllerReleased> answer) {
        released.put(controller, answer);
        if (!reader.isAlive()) {
            answer.completeExceptionally(new IllegalStateException("slave " + slaveId + " gone"));
            return;
        }
        channel.send(new ControlMessage.ReleaseController(controller, checkOnly));
    }

    /**
     * Completes with the slave's {@link ControlMessage.ControllerPrepared} error for {@code controller} (null:
     * prepared), exceptionally if the slave goes away first (issue #4 rolling upgrade).
     */
    java.util.concurrent.CompletableFuture<String> prepared(String controller) {
        return prepared.computeIfAbsent(controller, k -> new java.util.concurrent.CompletableFuture<>());
    }

    /** When the session of {@code controller} resumed in this slave (System.nanoTime), or 0. */
    long adoptedAtNs(String controller) {
        return adoptedAtNs.getOrDefault(controller, 0L);
    }

    /** Completes with the slave's answer to {@code adopt_session} for {@code controller} (null: adopted). */
    public java.util.concurrent.CompletableFuture<String> adopted(String controller) {
        return adopted.computeIfAbsent(controller, k -> new java.util.concurrent.CompletableFuture<>());
    }

    /**
     * Sends {@link ControlMessage.RemoveController} for {@code controller}; the future completes with the slave's
     * {@link ControlMessage.ControllerRemoved} error (null: removed), exceptionally if the slave goes away first.
     */
    public java.util.concurrent.CompletableFuture<String> remove(String controller) {
        java.util.concurrent.CompletableFuture<String> answer = new java.util.concurrent.CompletableFuture<>();
        removed.put(controller, answer);
        channel.send(new ControlMessage.RemoveController(controller));
        return answer;
    }

    /** Forgets what the slave reported about {@code controller} (it was removed; a new one may take the name). */
    public void forget(String controller) {
        sessions.remove(controller);
        listening.remove(controller);
        adopted.remove(controller);
    }

    /**
     * Nice value of the threads that read the slaves' control channels (issue #4): they sleep almost always, but a
     * handover's pause waits for each of their wake-ups, which on a host whose CPUs are busy (guests, pollers) would
     * otherwise wait for a time slice. {@code -Dvhostd.control.nice} (default -10; needs CAP_SYS_NICE, else ignored).
     */
    static final int CONTROL_NICE = Integer.getInteger("vhostd.control.nice", -10);

    private void readLoop() {
        io.vhostd.shm.linux.Priority.favourCurrentThread(CONTROL_NICE, io.vhostd.shm.linux.Priority.HANDOVER_RTPRIO);
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
                try {
                    handle(in.message(), in.fds());
                } catch (io.vhostd.shm.linux.ErrnoException e) {
                    // an answer the slave cannot get any more (it died): the messages it sent before still count
                    LOG.log(System.Logger.Level.DEBUG, "slave " + slaveId + ": answer not sent: " + e.getMessage());
                }
            }
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, "slave " + slaveId + " control channel closed: " + e.getMessage());
        } finally {
            listening.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
            adopted.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
            released.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
            removed.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
            prepared.values().forEach(f -> f.completeExceptionally(new IllegalStateException("slave gone")));
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
                    // the slave's own time (CLOCK_MONOTONIC, as the master's) when given, else the arrival
                    adoptedAtNs.put(m.controller(), m.resumedNs() > 0 ? m.resumedNs() : System.nanoTime());
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
            case ControlMessage.ControllerRemoved m -> {
                closeAll(fds);
                java.util.concurrent.CompletableFuture<String> answer = removed.remove(m.name());
                if (answer != null) {
                    answer.complete(m.error());
                } else {
                    LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": unasked " + m);
                }
            }
            case ControlMessage.ControllerReleased m -> {
                closeAll(fds);
                java.util.concurrent.CompletableFuture<ControlMessage.ControllerReleased> answer =
                        released.remove(m.controller());
                if (answer != null) {
                    answer.complete(m);
                } else {
                    LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": unasked " + m);
                }
            }
            case ControlMessage.ControllerPrepared m -> {
                closeAll(fds);
                if (m.name() != null && controllers.containsKey(m.name())) {
                    prepared(m.name()).complete(m.error());
                } else {
                    LOG.log(System.Logger.Level.WARNING, "slave " + slaveId + ": unasked " + m);
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

    /**
     * The slave is dead or dying with no code of it running (issue #4, a TASKSTATS exit notice comes before the
     * process is gone): reads every control message it sent before it died (custody changes, regions), then the
     * reader ends. Waits up to {@code timeoutMs}.
     */
    void drainAfterDeath(long timeoutMs) {
        channel.shutdownInput();
        joinReader(timeoutMs);
    }

    /** After the process died: ends the reader and closes the control channel. */
    void reap() {
        channel.shutdown();
        joinReader(1_000);
        channel.close();
    }

    private void joinReader(long timeoutMs) {
        try {
            reader.join(timeoutMs);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** All custody kinds that belong to a slave session (not the master's own listening socket). */
    static final List<String> SESSION_FDS =
            List.of("connection", "kick", "call", "err", "mem", "backend_req", "inflight");
}
