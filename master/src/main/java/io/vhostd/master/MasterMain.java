package io.vhostd.master;

import io.vhostd.master.config.ConfigException;
import io.vhostd.master.config.VhostdConfig;
import java.nio.file.Path;
import java.util.concurrent.Callable;
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
        Master master = new Master(cfg);
        Thread hook = new Thread(() -> master.shutdown("signal"), "shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            master.start();
        } catch (Exception e) {
            LOG.log(System.Logger.Level.ERROR, "start-up failed: " + e.getMessage(), e);
            master.shutdown("start-up failed");
            return EXIT_FAILURE;
        }
        master.awaitStop();
        return EXIT_FAILURE; // reached only when the slave died; a signal ends the JVM through the hook
    }
}
