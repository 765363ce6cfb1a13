package io.vhostd.dist;

import io.vhostd.master.MasterMain;
import io.vhostd.rpc.Vhostctl;
import io.vhostd.slave.SlaveMain;
import java.util.Arrays;
import picocli.CommandLine;

/**
 * Entry point of the shaded jar: {@code vhostd master --config FILE}, {@code vhostd blk ...} (one disk, vhost-user.rst
 * "Backend program conventions", what {@code bin/vhostd-user-blk} runs), {@code vhostd slave ...} (spawned by the
 * master), {@code vhostd vhostctl ...} (what {@code bin/vhostctl} runs), {@code vhostd --print-capabilities}.
 */
@CommandLine.Command(
        name = "vhostd",
        description = "vhost-user storage daemon for VM hosts",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        subcommands = {MasterMain.class, BlkMain.class, SlaveMain.class})
public final class Main implements Runnable {
    /** One-line log records: time, level, logger, message. */
    private static final String LOG_FORMAT = "%1$tF %1$tT.%1$tL %4$-7s [%3$s] %5$s%6$s%n";

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @CommandLine.Option(
            names = "--print-capabilities",
            description = "Print the vhost-user back-end capabilities (JSON, type block) and exit.")
    boolean printCapabilities;

    public static void main(String[] args) {
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty("java.util.logging.SimpleFormatter.format", LOG_FORMAT);
        }
        if (printsCapabilities(args)) {
            System.out.print(BlkMain.CAPABILITIES_JSON);
            System.out.flush();
            System.exit(0);
        }
        if (args.length > 0 && args[0].equals("vhostctl")) {
            System.exit(Vhostctl.run(Arrays.copyOfRange(args, 1, args.length)));
        }
        System.exit(new CommandLine(new Main()).execute(args));
    }

    /**
     * vhost-user.rst "Backend program conventions": with {@code --print-capabilities} the back-end prints its
     * capabilities and exits successfully; "other options and arguments should be ignored", so this is decided before
     * picocli sees them: {@code vhostd --print-capabilities ...} and {@code vhostd blk ... --print-capabilities ...}.
     */
    static boolean printsCapabilities(String[] args) {
        if (args.length == 0) {
            return false;
        }
        if (args[0].equals("--print-capabilities")) {
            return true;
        }
        return args[0].equals("blk") && Arrays.asList(args).contains("--print-capabilities");
    }

    @Override
    public void run() {
        if (printCapabilities) {
            System.out.print(BlkMain.CAPABILITIES_JSON);
            return;
        }
        throw new CommandLine.ParameterException(spec.commandLine(), "a subcommand is required: master or blk");
    }

    /** The version from the jar manifest. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"vhostd " + (v == null ? "dev" : v)};
        }
    }
}
