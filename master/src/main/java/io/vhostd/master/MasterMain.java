package io.vhostd.master;

import io.vhostd.master.config.ConfigException;
import io.vhostd.master.config.VhostdConfig;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine;

/** {@code vhostd master --config FILE}: runs the master in the foreground until SIGTERM/SIGINT. */
@CommandLine.Command(
        name = "master",
        description = "Run the vhostd master in the foreground (spawns the slave, serves the RPC socket).",
        mixinStandardHelpOptions = true)
public final class MasterMain implements Callable<Integer> {
    private static final System.Logger LOG = System.getLogger(MasterMain.class.getName());

    /** Exit status for a configuration error. */
    public static final int EXIT_CONFIG = 2;
    /** Exit status when start-up failed or the slave died. */
    public static final int EXIT_FAILURE = 1;

    @CommandLine.Option(
            names = {"-c", "--config"},
            required = true,
            description = "YAML configuration file (see README: Configuration).")
    Path config;

    @Override
    public Integer call() throws Exception {
        VhostdConfig cfg;
        try {
            cfg = VhostdConfig.load(config);
        } catch (ConfigException e) {
            System.err.println("vhostd: " + config + ": " + e.getMessage());
            return EXIT_CONFIG;
        }
        return run(new Master(cfg), () -> {});
    }

    /**
     * Runs {@code master} in the foreground: starts it, tells systemd (when it started us: {@link SystemdService}) that
     * it is ready, keeps the watchdog fed, and waits. SIGTERM/SIGINT stop it through a shutdown hook, which runs {@code
     * afterShutdown} once the master has stopped; otherwise this returns {@link #EXIT_FAILURE} when start-up failed or
     * the slave died (after stopping the master and running {@code afterShutdown}).
     */
    public static int run(Master master, Runnable afterShutdown) throws InterruptedException {
        SystemdService systemd = SystemdService.fromEnvironment(master::healthProblem);
        // whoever stops the master first (signal hook, failed start-up, dead slave) says why and cleans up, once
        AtomicBoolean stopping = new AtomicBoolean();
        Runnable stopOnSignal = () -> stop(stopping, systemd, master, "signal", afterShutdown);
        Runtime.getRuntime().addShutdownHook(new Thread(stopOnSignal, "shutdown"));
        systemd.status("starting: bdevs, arena, controllers, slave, rpc");
        try {
            master.start();
        } catch (Exception e) {
            LOG.log(System.Logger.Level.ERROR, "start-up failed: " + e.getMessage(), e);
            stop(stopping, systemd, master, "start-up failed: " + e.getMessage(), afterShutdown);
            return EXIT_FAILURE;
        }
        // the point of "vhostd master ready": every configured controller listens, the RPC socket is up
        systemd.ready("ready: " + master.readySummary());
        systemd.startWatchdog();
        master.awaitStop();
        // the slave died, or the signal hook stopped the master (then the JVM is exiting and this changes nothing)
        stop(stopping, systemd, master, "slave exited", afterShutdown);
        return EXIT_FAILURE;
    }

    private static void stop(
            AtomicBoolean stopping, SystemdService systemd, Master master, String reason, Runnable afterShutdown) {
        if (!stopping.compareAndSet(false, true)) {
            return;
        }
        systemd.stopping("stopping: " + reason);
        master.shutdown(reason);
        afterShutdown.run();
    }
}
