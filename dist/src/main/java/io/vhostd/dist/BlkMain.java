package io.vhostd.dist;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.Master;
import io.vhostd.master.MasterMain;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.master.config.ConfigException;
import io.vhostd.master.config.ControllerConfig;
import io.vhostd.master.config.HugepagesConfig;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Socket;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine;

/**
 * {@code vhostd blk}: the vhost-user-blk back-end program of vhost-user.rst "Backend program conventions" — one disk
 * ({@code --blk-file}, a file or a block device), one vhost-user socket ({@code --socket-path} to create, or {@code
 * --fd} inherited and already listening), in the foreground until SIGTERM. It is the master of {@code vhostd master}
 * on an in-memory configuration (one bdev, one controller, a private run directory), with its slave: the same code
 * path, including systemd notification.
 *
 * <p>{@code --print-capabilities} prints {@link #CAPABILITIES_JSON} (the {@code VHostUserBackendCapabilitiesBlock} of
 * vhost-user.json) and exits 0, ignoring everything else on the command line ({@link Main} handles it before option
 * parsing). Exit status: 2 for bad arguments or a disk that cannot be served, 1 when start-up failed or the slave
 * died, 143 (128 + SIGTERM, the JVM's) after a SIGTERM stopped it.
 */
@CommandLine.Command(
        name = "blk",
        description = {
            "Serve one disk over one vhost-user socket in the foreground (vhost-user.rst \"Backend program"
                    + " conventions\"; also /usr/libexec/vhostd-user-blk).",
            "Exactly one of --socket-path and --fd."
        },
        mixinStandardHelpOptions = true)
public final class BlkMain implements Callable<Integer> {
    /**
     * {@code --print-capabilities} output: type {@code block} with every {@code VHostUserBackendBlockFeature}
     * vhost-user.json defines ({@code read-only}: the {@code --read-only} option, {@code blk-file}: the {@code
     * --blk-file} option), laid out as QEMU's contrib/vhost-user-blk prints it.
     */
    public static final String CAPABILITIES_JSON =
            "{\n  \"type\": \"block\",\n  \"features\": [\n    \"read-only\",\n    \"blk-file\"\n  ]\n}\n";

    /** The name of the one bdev and the one controller. */
    public static final String NAME = "blk0";

    /** Default {@code --num-queues}: QEMU asks for one queue per vCPU and refuses a back-end that offers fewer. */
    public static final int DEFAULT_NUM_QUEUES = 8;

    private static final ObjectMapper JSON = new ObjectMapper();

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @CommandLine.Option(
            names = "--print-capabilities",
            description = "Print the back-end capabilities as JSON and exit; every other argument is ignored.")
    boolean printCapabilities;

    @CommandLine.Option(
            names = "--socket-path",
            paramLabel = "PATH",
            description = "Create the vhost-user socket here (mode 0660; a stale socket file is replaced).")
    Path socketPath;

    @CommandLine.Option(
            names = "--fd",
            paramLabel = "FDNUM",
            description = "Serve the listening AF_UNIX stream socket inherited as this descriptor.")
    Integer fd;

    @CommandLine.Option(
            names = "--blk-file",
            paramLabel = "PATH",
            description = "The disk: a raw image file (it must exist) or a block device.")
    Path blkFile;

    @CommandLine.Option(names = "--read-only", description = "Open the disk read-only and offer VIRTIO_BLK_F_RO.")
    boolean readOnly;

    @CommandLine.Option(
            names = "--num-queues",
            paramLabel = "N",
            defaultValue = "" + DEFAULT_NUM_QUEUES,
            description = "Request virtqueues offered, 1.." + ControllerConfig.MAX_NUM_QUEUES
                    + " (default ${DEFAULT-VALUE}); QEMU's num-queues must not exceed it.")
    int numQueues;

    @CommandLine.Option(
            names = "--serial",
            paramLabel = "SERIAL",
            description = "virtio-blk serial, at most 20 bytes (default: the disk's file name, cut to fit).")
    String serial;

    @CommandLine.Option(
            names = "--run-dir",
            paramLabel = "DIR",
            description = "Private state directory (default: a new one under $RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR"
                    + " or the temp directory, removed at exit).")
    Path runDir;

    @Override
    public Integer call() throws Exception {
        if (printCapabilities) {
            System.out.print(CAPABILITIES_JSON);
            System.out.flush();
            return 0;
        }
        if ((socketPath == null) == (fd == null)) {
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "exactly one of --socket-path and --fd is required");
        }
        if (blkFile == null) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--blk-file is required");
        }
        String socket;
        if (fd != null) {
            try {
                socket = inheritedListener(fd);
            } catch (IllegalArgumentException | ErrnoException e) {
                System.err.println("vhostd blk: --fd=" + fd + ": " + e.getMessage());
                return MasterMain.EXIT_CONFIG;
            }
        } else {
            socket = socketPath.toAbsolutePath().normalize().toString();
        }
        boolean ownRunDir = runDir == null;
        Path dir = ownRunDir ? Files.createTempDirectory(runtimeBase(System.getenv()), "vhostd-blk-") : runDir;
        Runnable cleanup = ownRunDir ? () -> deleteTree(dir) : () -> {};
        if (socket.isEmpty() || !socket.startsWith("/")) {
            // unnamed or abstract: the configuration still wants a path; nothing is ever created at it
            socket =
                    dir.toAbsolutePath().resolve("inherited-fd-" + fd + ".sock").toString();
        }
        VhostdConfig config;
        try {
            config = VhostdConfig.parse(configJson(
                    dir.toAbsolutePath(), blkFile.toAbsolutePath().normalize(), socket, readOnly, numQueues, serial));
        } catch (ConfigException e) {
            System.err.println("vhostd blk: " + e.getMessage());
            cleanup.run();
            return MasterMain.EXIT_CONFIG;
        }
        Master.Options options = Master.Options.defaults();
        if (fd != null) {
            options = options.withListenFds(Map.of(NAME, fd));
        }
        return MasterMain.run(new Master(config, options), cleanup);
    }

    /**
     * The configuration {@code vhostd blk} runs: everything under {@code runDir}, one bdev {@value #NAME} of type
     * {@code block} (a block device) or {@code file} (anything else; it must exist, its size is the disk's), one
     * {@code vhost-user-blk} controller {@value #NAME} on {@code socket}, an arena just large enough for its queue
     * pairs. JSON, which {@link VhostdConfig#parse} reads as YAML and validates like a configuration file.
     *
     * @param serial null for the file name of {@code blkFile}, cut to {@value ControllerConfig#SERIAL_MAX_BYTES} bytes
     */
    public static String configJson(
            Path runDir, Path blkFile, String socket, boolean readOnly, int numQueues, String serial) {
        ObjectNode root = JSON.createObjectNode();
        root.put("run_dir", runDir.toString());
        root.putObject("hugepages")
                .put("enabled", true)
                // the master grows the arena to what the queue pairs need: one huge page is the least to ask for
                .put("arena_size_bytes", HugepagesConfig.HUGEPAGE_SIZE_BYTES);
        ObjectNode bdev = root.putArray("bdevs").addObject();
        bdev.put("name", NAME);
        bdev.put("type", isBlockDevice(blkFile) ? BdevConfig.TYPE_BLOCK : BdevConfig.TYPE_FILE);
        bdev.put("path", blkFile.toString());
        bdev.put("read_only", readOnly);
        ObjectNode controller = root.putArray("controllers").addObject();
        controller.put("name", NAME);
        controller.put("type", ControllerConfig.TYPE_VHOST_USER_BLK);
        controller.put("bdev", NAME);
        controller.put("socket", socket);
        controller.put("num_queues", numQueues);
        controller.put("serial", serial != null ? serial : defaultSerial(blkFile));
        controller.put("read_only", readOnly);
        return root.toString();
    }

    /** The file name of {@code blkFile}, cut (at a character boundary) to {@value ControllerConfig#SERIAL_MAX_BYTES}. */
    static String defaultSerial(Path blkFile) {
        Path name = blkFile.getFileName();
        String s = name == null ? NAME : name.toString();
        while (s.getBytes(StandardCharsets.UTF_8).length > ControllerConfig.SERIAL_MAX_BYTES) {
            s = s.substring(0, s.offsetByCodePoints(s.length(), -1));
        }
        return s;
    }

    /**
     * Checks that {@code fd} is a listening {@code AF_UNIX} stream socket (what vhost-user.rst's {@code --fd} hands
     * over: the back-end accepts the front-end's connection on it), marks it close-on-exec, and returns the path it is
     * bound to: empty when unnamed, NUL-prefixed when abstract.
     *
     * @throws IllegalArgumentException when it is another kind of descriptor
     * @throws ErrnoException when it is no descriptor at all ({@code EBADF}) or no socket ({@code ENOTSOCK})
     */
    public static String inheritedListener(int fd) {
        if (fd < 0) {
            throw new IllegalArgumentException("not a descriptor number");
        }
        if (Socket.getsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_DOMAIN) != Socket.AF_UNIX) {
            throw new IllegalArgumentException("not an AF_UNIX socket");
        }
        if (Socket.getsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_TYPE) != Socket.SOCK_STREAM) {
            throw new IllegalArgumentException("not a SOCK_STREAM socket");
        }
        if (Socket.getsockoptInt(fd, Socket.SOL_SOCKET, Socket.SO_ACCEPTCONN) == 0) {
            throw new IllegalArgumentException("not a listening socket (listen(2) it before passing it)");
        }
        // it came across exec; it must not go on to the slave that way (the master passes it with SCM_RIGHTS)
        Fcntl.setCloseOnExec(fd, true);
        return Socket.getsockname(fd);
    }

    /** Where the private run directory goes: systemd's RuntimeDirectory, else the user's runtime dir, else tmp. */
    static Path runtimeBase(Map<String, String> env) {
        String runtime = env.get("RUNTIME_DIRECTORY");
        if (runtime != null && !runtime.isEmpty()) {
            // systemd passes a colon-separated list when the unit names several directories
            return Path.of(runtime.split(":", 2)[0]);
        }
        String xdg = env.get("XDG_RUNTIME_DIR");
        if (xdg != null && !xdg.isEmpty() && Files.isDirectory(Path.of(xdg))) {
            return Path.of(xdg);
        }
        return Path.of(System.getProperty("java.io.tmpdir"));
    }

    private static boolean isBlockDevice(Path path) {
        try {
            int mode = (Integer) Files.getAttribute(path, "unix:mode");
            return (mode & io.vhostd.shm.linux.Stat.S_IFMT) == io.vhostd.shm.linux.Stat.S_IFBLK;
        } catch (IOException | RuntimeException e) {
            // missing or unreadable: the file bdev's own checks name the problem
            return false;
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException | UncheckedIOException e) {
            System.err.println("vhostd blk: cannot remove " + dir + ": " + e.getMessage());
        }
    }
}
