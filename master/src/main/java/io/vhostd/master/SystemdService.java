package io.vhostd.master;

import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.SdNotify;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;

/**
 * The master's side of systemd's service protocol ({@code Type=notify}, {@code systemd/vhostd.service}): {@code
 * STATUS=} lines, {@code READY=1} once {@link Master#start} returned (every configured controller listens, the RPC
 * socket is up), {@code STOPPING=1} on shutdown, and {@code WATCHDOG=1} keep-alives at half of {@code $WATCHDOG_USEC}
 * for as long as the master is healthy ({@link Master#healthProblem}). A master that stops being healthy stops the
 * keep-alives and says why in {@code STATUS=}; systemd then kills it ({@code WatchdogSec=}) and
 * {@code Restart=on-failure} starts a new one.
 *
 * <p>Without {@code $NOTIFY_SOCKET} (not started by systemd) every method does nothing. A failed send is logged once
 * and otherwise ignored: the manager going away must not stop the daemon.
 */
public final class SystemdService implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(SystemdService.class.getName());

    private final SdNotify notify;
    private final long watchdogUsec;
    private final Supplier<String> health;
    private volatile Thread watchdog;
    private volatile boolean closed;
    private boolean sendFailureLogged;
    private String lastProblem;

    /**
     * @param notify where notifications go
     * @param watchdogUsec the watchdog timeout in microseconds ({@link SdNotify#watchdogUsec}), 0 for none
     * @param health null while healthy, else what is wrong (e.g. {@link Master#healthProblem})
     */
    public SystemdService(SdNotify notify, long watchdogUsec, Supplier<String> health) {
        this.notify = notify;
        this.watchdogUsec = watchdogUsec;
        this.health = health;
    }

    /**
     * The service as this process's environment describes it ({@code $NOTIFY_SOCKET}, {@code $WATCHDOG_USEC}, {@code
     * $WATCHDOG_PID}); an address this implementation cannot use is logged and notification disabled.
     */
    public static SystemdService fromEnvironment(Supplier<String> health) {
        SdNotify notify;
        try {
            notify = SdNotify.fromEnvironment();
        } catch (IllegalArgumentException e) {
            LOG.log(System.Logger.Level.WARNING, "systemd notification disabled: " + e.getMessage());
            notify = SdNotify.disabled();
        }
        return new SystemdService(notify, notify.enabled() ? SdNotify.watchdogUsecFromEnvironment() : 0, health);
    }

    /** Whether a service manager listens. */
    public boolean enabled() {
        return notify.enabled();
    }

    /** The watchdog timeout in microseconds; 0 when systemd set none. */
    public long watchdogUsec() {
        return watchdogUsec;
    }

    /** How often keep-alives go out: half the watchdog timeout, as sd_watchdog_enabled(3) recommends; 0 for none. */
    public long keepAliveIntervalNs() {
        return TimeUnit.MICROSECONDS.toNanos(watchdogUsec) / 2;
    }

    /** {@code STATUS=text}. */
    public void status(String text) {
        send(SdNotify.status(text));
    }

    /** {@code READY=1} with {@code STATUS=text}: start-up is complete. */
    public void ready(String text) {
        send(SdNotify.READY, SdNotify.status(text));
    }

    /** {@code STOPPING=1} with {@code STATUS=text}; stops the keep-alives. */
    public void stopping(String text) {
        stopWatchdog();
        send(SdNotify.STOPPING, SdNotify.status(text));
    }

    /**
     * One watchdog period: {@code WATCHDOG=1} if healthy; otherwise no keep-alive, and {@code STATUS=} with the problem
     * when it is new (logged once too).
     *
     * @return whether a keep-alive was sent
     */
    public synchronized boolean watchdogTick() {
        String problem = health.get();
        if (problem == null) {
            if (lastProblem != null) {
                LOG.log(System.Logger.Level.INFO, "healthy again; watchdog keep-alives resume");
                send(SdNotify.status("healthy again"));
                lastProblem = null;
            }
            return send(SdNotify.WATCHDOG);
        }
        if (!problem.equals(lastProblem)) {
            lastProblem = problem;
            LOG.log(System.Logger.Level.ERROR, "unhealthy: " + problem + "; watchdog keep-alives stopped");
            send(SdNotify.status("unhealthy: " + problem + "; watchdog keep-alives stopped"));
        }
        return false;
    }

    /**
     * Starts the keep-alive thread (a daemon, one tick per {@link #keepAliveIntervalNs}); does nothing without a
     * watchdog. Call after {@link #ready}.
     */
    public synchronized void startWatchdog() {
        if (!enabled() || watchdogUsec <= 0 || watchdog != null || closed) {
            return;
        }
        long intervalNs = keepAliveIntervalNs();
        LOG.log(
                System.Logger.Level.INFO,
                "systemd watchdog: " + TimeUnit.MICROSECONDS.toMillis(watchdogUsec) + " ms, keep-alive every "
                        + TimeUnit.NANOSECONDS.toMillis(intervalNs) + " ms");
        watchdog = Thread.ofPlatform().name("systemd-watchdog").daemon(true).start(() -> {
            while (!closed) {
                watchdogTick();
                // a period-long park; an unpark (close) ends it early, a spurious wake-up only ticks early
                LockSupport.parkNanos(intervalNs);
            }
        });
    }

    private void stopWatchdog() {
        closed = true;
        Thread t = watchdog;
        if (t != null) {
            LockSupport.unpark(t);
        }
    }

    /** Stops the keep-alive thread; sends nothing. */
    @Override
    public void close() {
        stopWatchdog();
    }

    private synchronized boolean send(String... assignments) {
        try {
            return notify.notify(assignments);
        } catch (ErrnoException e) {
            if (!sendFailureLogged) {
                sendFailureLogged = true;
                LOG.log(
                        System.Logger.Level.WARNING,
                        "systemd notification to " + notify.notifySocket() + " failed: " + e.getMessage());
            }
            return false;
        }
    }
}
