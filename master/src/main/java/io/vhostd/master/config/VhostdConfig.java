package io.vhostd.master.config;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.yaml.snakeyaml.error.MarkedYAMLException;

/**
 * The master's configuration file (YAML, snake_case keys). Example with every key:
 *
 * <pre>
 * run_dir: /run/vhostd                 # default /run/vhostd; absolute
 * rpc_socket: rpc.sock                 # default &lt;run_dir&gt;/rpc.sock; relative = under run_dir
 * rpc_socket_mode: "0660"              # "0660" (default) or "0600"; quoted
 * rpc_socket_group: vhostd             # a group name or gid; default the master's primary group
 * registry_path: registry.dat          # default &lt;run_dir&gt;/registry.dat; relative = under run_dir
 * hugepages: {enabled: true, arena_size_bytes: 67108864, reserve: 32, node: 0}
 * bdevs:
 *   - {name: disk0, type: file, path: /var/lib/vhostd/disk0.img, size_bytes: 1073741824,
 *      read_only: false, direct: false, block_size: 512}
 *   - {name: sdb, type: block, path: /dev/sdb, direct: true}
 *   - {name: nvme0, type: nvme, traddr: "0000:01:00.0"}     # bdevs nvme0n1, nvme0n2, ...
 *   - {name: null0, type: null, num_blocks: 2097152, block_size: 512}
 *   - {name: ram0, type: malloc, size_bytes: 268435456}
 * controllers:
 *   - {name: vhost-blk0, type: vhost-user-blk, bdev: disk0, socket: vhost-blk0.sock,
 *      num_queues: 2, queue_size_max: 1024, serial: vhost-blk0, read_only: false}
 * slave: {java_opts: [], max_segments: 128}
 * prometheus: {listen: "127.0.0.1:9465"}   # GET /metrics; absent = off (docs/observability.md)
 * </pre>
 *
 * <p>Unknown keys are errors; an empty value counts as absent. The records hold resolved values: defaults applied,
 * relative sockets resolved against {@code run_dir}, a {@code file} bdev's size taken from the existing file when not
 * given. Loading reads the file system (does a bdev file exist, what size is it) but changes nothing.
 *
 * @param runDir absolute directory for sockets and run-time state; key {@code run_dir}, default {@value
 *     #DEFAULT_RUN_DIR}
 * @param rpcSocket absolute path of the RPC socket; key {@code rpc_socket}, default {@code <run_dir>/rpc.sock}
 * @param registryPath absolute path of the persistent bdev/controller registry (Chronicle Map); key {@code
 *     registry_path}, default {@code <run_dir>/registry.dat}
 * @param hugepages key {@code hugepages}
 * @param bdevs key {@code bdevs}, default none; names unique
 * @param controllers key {@code controllers}, default none; names and sockets unique
 * @param slave key {@code slave}
 * @param rpcSocketAccess keys {@code rpc_socket_mode} and {@code rpc_socket_group}
 * @param prometheus key {@code prometheus}: the metrics endpoint, {@link PrometheusConfig#DISABLED} when absent
 */
public record VhostdConfig(
        String runDir,
        String rpcSocket,
        String registryPath,
        HugepagesConfig hugepages,
        List<BdevConfig> bdevs,
        List<ControllerConfig> controllers,
        SlaveConfig slave,
        RpcSocketConfig rpcSocketAccess,
        PrometheusConfig prometheus) {
    /** Default {@code run_dir}. */
    public static final String DEFAULT_RUN_DIR = "/run/vhostd";

    /** File name of the RPC socket under {@code run_dir} when {@code rpc_socket} is not given. */
    public static final String DEFAULT_RPC_SOCKET_NAME = "rpc.sock";

    /** File name of the registry under {@code run_dir} when {@code registry_path} is not given. */
    public static final String DEFAULT_REGISTRY_NAME = "registry.dat";

    private static final Set<String> TOP_KEYS = Set.of(
            "run_dir",
            "rpc_socket",
            "rpc_socket_mode",
            "rpc_socket_group",
            "registry_path",
            "hugepages",
            "bdevs",
            "controllers",
            "slave",
            "prometheus");
    private static final Set<String> HUGEPAGES_KEYS = Set.of("enabled", "arena_size_bytes", "reserve", "node");
    private static final Set<String> BDEV_KEYS = Set.of(
            "name",
            "type",
            "path",
            "size_bytes",
            "num_blocks",
            "read_only",
            "direct",
            "block_size",
            "device",
            "traddr");
    /** The keys each bdev type takes (BdevConfig's Javadoc). */
    private static final Map<String, Set<String>> BDEV_TYPE_KEYS = Map.of(
            BdevConfig.TYPE_FILE,
            Set.of("name", "type", "path", "size_bytes", "read_only", "direct", "block_size"),
            BdevConfig.TYPE_BLOCK,
            Set.of("name", "type", "path", "read_only", "direct", "block_size"),
            BdevConfig.TYPE_NVME,
            Set.of("name", "type", "device", "traddr", "read_only", "direct"),
            BdevConfig.TYPE_NULL,
            Set.of("name", "type", "num_blocks", "size_bytes", "read_only", "block_size"),
            BdevConfig.TYPE_MALLOC,
            Set.of("name", "type", "num_blocks", "size_bytes", "read_only", "block_size"));
    /** A kernel NVMe controller name, with or without /dev/. */
    private static final Pattern NVME_DEVICE = Pattern.compile("(/dev/)?nvme[0-9]+");
    /** The bdev name of an nvme bdev's namespace: {@code <name>n<nsid>}. */
    private static final Pattern NVME_NAMESPACE_SUFFIX = Pattern.compile("n[1-9][0-9]{0,9}");

    private static final Set<String> CONTROLLER_KEYS =
            Set.of("name", "type", "bdev", "socket", "num_queues", "queue_size_max", "serial", "read_only");
    private static final Set<String> SLAVE_KEYS =
            Set.of("java_opts", "max_segments", "orphan_timeout_ms", "standby_delay_ms", "aot_cache");

    private static final Set<Long> BLOCK_SIZES = Set.of(512L, 1024L, 2048L, 4096L);
    /** Largest null/malloc bdev: 2^50 bytes (1 PiB), far beyond RAM, small enough that no size arithmetic overflows. */
    public static final long MAX_BDEV_BYTES = 1L << 50;

    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._:-]{1,64}");
    private static final YAMLMapper YAML = YAMLMapper.builder()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER)
            // every string quoted: a PCI address (traddr 0000:01:00.0) unquoted reads back as a YAML 1.1 number
            .disable(YAMLGenerator.Feature.MINIMIZE_QUOTES)
            .build();

    public VhostdConfig {
        bdevs = List.copyOf(bdevs);
        controllers = List.copyOf(controllers);
        Objects.requireNonNull(rpcSocketAccess, "rpcSocketAccess");
        Objects.requireNonNull(prometheus, "prometheus");
    }

    /** A configuration without the Prometheus endpoint ({@link PrometheusConfig#DISABLED}). */
    public VhostdConfig(
            String runDir,
            String rpcSocket,
            String registryPath,
            HugepagesConfig hugepages,
            List<BdevConfig> bdevs,
            List<ControllerConfig> controllers,
            SlaveConfig slave,
            RpcSocketConfig rpcSocketAccess) {
        this(
                runDir,
                rpcSocket,
                registryPath,
                hugepages,
                bdevs,
                controllers,
                slave,
                rpcSocketAccess,
                PrometheusConfig.DISABLED);
    }

    /** A configuration whose RPC socket has the default mode and group ({@link RpcSocketConfig#defaults()}). */
    public VhostdConfig(
            String runDir,
            String rpcSocket,
            String registryPath,
            HugepagesConfig hugepages,
            List<BdevConfig> bdevs,
            List<ControllerConfig> controllers,
            SlaveConfig slave) {
        this(runDir, rpcSocket, registryPath, hugepages, bdevs, controllers, slave, RpcSocketConfig.defaults());
    }

    /** A configuration with the registry at its default place, {@code <run_dir>/registry.dat}. */
    public VhostdConfig(
            String runDir,
            String rpcSocket,
            HugepagesConfig hugepages,
            List<BdevConfig> bdevs,
            List<ControllerConfig> controllers,
            SlaveConfig slave) {
        this(
                runDir,
                rpcSocket,
                Path.of(runDir).resolve(DEFAULT_REGISTRY_NAME).toString(),
                hugepages,
                bdevs,
                controllers,
                slave);
    }

    /**
     * Validates one bdev entry, as {@link #parse} does for each element of {@code bdevs:}; the RPC methods that create
     * bdevs use it so that a bdev is checked the same way from either side. Reads the file system, changes nothing.
     *
     * @param entry a mapping with the keys of one {@code bdevs:} element
     * @throws ConfigException naming the key (without a {@code bdevs[i].} prefix)
     */
    public static BdevConfig parseBdev(JsonNode entry) throws ConfigException {
        return bdev(new ConfigNode(entry, ""));
    }

    /**
     * Reads and validates a configuration file.
     *
     * @throws ConfigException naming the key path of the first problem found, or the line and column of a YAML syntax
     *     error, or saying why the file cannot be read
     */
    public static VhostdConfig load(Path file) throws ConfigException {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new ConfigException("", "cannot read " + file + ": " + e, e);
        }
        return parse(text);
    }

    /** Validates configuration text, as {@link #load} does for a file's contents. */
    public static VhostdConfig parse(String yaml) throws ConfigException {
        JsonNode tree;
        try (JsonParser parser = YAML.createParser(yaml)) {
            tree = YAML.readTree(parser);
            if (parser.nextToken() != null) {
                throw new ConfigException("", "more than one YAML document; a configuration is one document");
            }
        } catch (JsonProcessingException e) {
            throw syntaxError(e);
        } catch (IOException e) {
            throw new ConfigException("", "cannot parse YAML: " + e.getMessage(), e);
        }
        if (tree == null || tree.isMissingNode() || tree.isNull()) {
            tree = YAML.createObjectNode();
        }
        return fromTree(new ConfigNode(tree, ""));
    }

    /**
     * The demo configuration: everything under {@code dir} (run directory, RPC socket), one {@code file} bdev {@code
     * disk0} of 1 GiB at {@code dir/disk0.img}, one {@code vhost-user-blk} controller {@code vhost-blk0} with 2 queues
     * on {@code dir/vhost-blk0.sock}. Not validated against the file system (the file may not exist yet).
     */
    public static VhostdConfig defaults(Path dir) {
        Path base = dir.toAbsolutePath();
        return new VhostdConfig(
                base.toString(),
                base.resolve(DEFAULT_RPC_SOCKET_NAME).toString(),
                base.resolve(DEFAULT_REGISTRY_NAME).toString(),
                HugepagesConfig.defaults(),
                List.of(new BdevConfig(
                        "disk0",
                        BdevConfig.TYPE_FILE,
                        base.resolve("disk0.img").toString(),
                        1L << 30,
                        false,
                        false,
                        BdevConfig.DEFAULT_BLOCK_SIZE)),
                List.of(new ControllerConfig(
                        "vhost-blk0",
                        ControllerConfig.TYPE_VHOST_USER_BLK,
                        "disk0",
                        base.resolve("vhost-blk0.sock").toString(),
                        2,
                        ControllerConfig.DEFAULT_QUEUE_SIZE_MAX,
                        "vhost-blk0",
                        false)),
                SlaveConfig.defaults());
    }

    /** The bdev with this name, if configured. */
    public Optional<BdevConfig> bdev(String name) {
        return bdevs.stream().filter(b -> b.name().equals(name)).findFirst();
    }

    /** The controller with this name, if configured. */
    public Optional<ControllerConfig> controller(String name) {
        return controllers.stream().filter(c -> c.name().equals(name)).findFirst();
    }

    /** This configuration as YAML with every key written out; {@link #parse} reads it back to an equal record. */
    public String toYaml() {
        ObjectNode root = YAML.createObjectNode();
        root.put("run_dir", runDir);
        root.put("rpc_socket", rpcSocket);
        root.put("rpc_socket_mode", rpcSocketAccess.modeText());
        if (rpcSocketAccess.group() != null) {
            root.put("rpc_socket_group", rpcSocketAccess.group());
        }
        root.put("registry_path", registryPath);
        ObjectNode huge = root.putObject("hugepages");
        huge.put("enabled", hugepages.enabled());
        huge.put("arena_size_bytes", hugepages.arenaSizeBytes());
        huge.put("reserve", hugepages.reserve());
        if (hugepages.node() != HugepagesConfig.ANY_NODE) {
            huge.put("node", hugepages.node());
        }
        ArrayNode bdevList = root.putArray("bdevs");
        for (BdevConfig b : bdevs) {
            bdevList.add(bdevToTree(b));
        }
        ArrayNode controllerList = root.putArray("controllers");
        for (ControllerConfig c : controllers) {
            ObjectNode o = controllerList.addObject();
            o.put("name", c.name());
            o.put("type", c.type());
            o.put("bdev", c.bdev());
            o.put("socket", c.socket());
            o.put("num_queues", c.numQueues());
            o.put("queue_size_max", c.queueSizeMax());
            o.put("serial", c.serial());
            o.put("read_only", c.readOnly());
        }
        ObjectNode slaveNode = root.putObject("slave");
        ArrayNode opts = slaveNode.putArray("java_opts");
        slave.javaOpts().forEach(opts::add);
        slaveNode.put("max_segments", slave.maxSegments());
        slaveNode.put("orphan_timeout_ms", slave.orphanTimeoutMs());
        slaveNode.put("standby_delay_ms", slave.standbyDelayMs());
        if (slave.aotCache() != null) {
            slaveNode.put("aot_cache", slave.aotCache());
        }
        if (prometheus.enabled()) {
            root.putObject("prometheus").put("listen", prometheus.listenText());
        }
        try {
            return YAML.writeValueAsString(root);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write YAML", e);
        }
    }

    /**
     * One bdev as the mapping {@link #parseBdev} reads back to an equal record: only the keys its type takes, with
     * resolved values.
     */
    public static ObjectNode bdevToTree(BdevConfig b) {
        ObjectNode o = YAML.createObjectNode();
        o.put("name", b.name());
        o.put("type", b.type());
        switch (b.type()) {
            case BdevConfig.TYPE_FILE -> {
                o.put("path", b.path());
                o.put("size_bytes", b.sizeBytes());
                o.put("direct", b.direct());
                o.put("block_size", b.blockSize());
            }
            case BdevConfig.TYPE_BLOCK -> {
                o.put("path", b.path());
                o.put("direct", b.direct());
                o.put("block_size", b.blockSize());
            }
            case BdevConfig.TYPE_NVME -> {
                if (b.device() != null) {
                    o.put("device", b.device());
                } else {
                    o.put("traddr", b.traddr());
                }
                o.put("direct", b.direct());
            }
            default -> {
                o.put("num_blocks", b.numBlocks());
                o.put("block_size", b.blockSize());
            }
        }
        o.put("read_only", b.readOnly());
        return o;
    }

    private static ConfigException syntaxError(JsonProcessingException e) {
        JsonLocation where = e.getLocation();
        String message = e.getOriginalMessage().lines().findFirst().orElse("").strip();
        // SnakeYAML's own message starts with the context ("while parsing ..."); its problem says what is wrong
        if (e.getCause() instanceof MarkedYAMLException yaml && yaml.getProblem() != null) {
            message = yaml.getProblem() + (yaml.getContext() == null ? "" : " (" + yaml.getContext() + ")");
            if (yaml.getProblemMark() != null) {
                // Mark lines and columns count from 0
                return new ConfigException(
                        "",
                        "line " + (yaml.getProblemMark().getLine() + 1) + ", column "
                                + (yaml.getProblemMark().getColumn() + 1) + ": YAML syntax error: " + message,
                        e);
            }
        }
        String at = where == null || where.getLineNr() < 1
                ? ""
                : "line " + where.getLineNr() + ", column " + where.getColumnNr() + ": ";
        if (message.startsWith("Malformed numeric value")) {
            // YAML 1.1 reads 0000:01:00.0 (a PCI address) as a base-60 number
            message += " (quote a value like this: traddr: \"0000:01:00.0\")";
        }
        return new ConfigException("", at + "YAML syntax error: " + message, e);
    }

    private static VhostdConfig fromTree(ConfigNode root) throws ConfigException {
        root.requireMapping(TOP_KEYS);
        String runDir = root.string("run_dir", DEFAULT_RUN_DIR);
        if (!Path.of(runDir).isAbsolute()) {
            throw root.error("run_dir", "must be an absolute path, not '" + runDir + "'");
        }
        String rpcSocket = socketPath(root, "rpc_socket", runDir, DEFAULT_RPC_SOCKET_NAME);
        String registryPath = Path.of(runDir)
                .resolve(root.string("registry_path", DEFAULT_REGISTRY_NAME))
                .normalize()
                .toString();
        if (root.has("registry_path") && root.string("registry_path", "").isEmpty()) {
            throw root.error("registry_path", "must not be empty");
        }
        HugepagesConfig hugepages = hugepages(root.child("hugepages"));
        List<BdevConfig> bdevs = new ArrayList<>();
        Map<String, String> bdevNames = new HashMap<>();
        for (ConfigNode b : root.list("bdevs")) {
            BdevConfig bdev = bdev(b);
            if (bdevNames.putIfAbsent(bdev.name(), b.path()) != null) {
                throw b.error("name", "duplicate name '" + bdev.name() + "' (also " + bdevNames.get(bdev.name()) + ")");
            }
            bdevs.add(bdev);
        }
        List<ControllerConfig> controllers = new ArrayList<>();
        Map<String, String> controllerNames = new HashMap<>();
        Map<String, String> servedBy = new HashMap<>();
        Set<String> sockets = new HashSet<>(Set.of(rpcSocket));
        for (ConfigNode c : root.list("controllers")) {
            ControllerConfig controller = controller(c, runDir, bdevs);
            if (controllerNames.putIfAbsent(controller.name(), c.path()) != null) {
                throw c.error(
                        "name",
                        "duplicate name '" + controller.name() + "' (also " + controllerNames.get(controller.name())
                                + ")");
            }
            String other = servedBy.putIfAbsent(controller.bdev(), controller.name());
            if (other != null) {
                throw c.error(
                        "bdev", "bdev '" + controller.bdev() + "' is already served by controller '" + other + "'");
            }
            if (!sockets.add(controller.socket())) {
                throw c.error("socket", "'" + controller.socket() + "' is already used by another socket");
            }
            controllers.add(controller);
        }
        return new VhostdConfig(
                runDir,
                rpcSocket,
                registryPath,
                hugepages,
                bdevs,
                controllers,
                slave(root.child("slave")),
                rpcSocketAccess(root),
                PrometheusConfig.parse(root.child("prometheus")));
    }

    /** Keys {@code rpc_socket_mode} and {@code rpc_socket_group}; the group must exist (name or gid). */
    private static RpcSocketConfig rpcSocketAccess(ConfigNode root) throws ConfigException {
        int mode = RpcSocketConfig.MODE_0660;
        if (root.has("rpc_socket_mode")) {
            String text;
            try {
                text = root.string("rpc_socket_mode", null);
            } catch (ConfigException e) {
                // YAML 1.1 reads an unquoted 0660 as the octal number 432: refuse rather than guess
                throw root.error("rpc_socket_mode", "must be a quoted octal string, \"0660\" or \"0600\"");
            }
            mode = switch (text) {
                case RpcSocketConfig.MODE_0660_TEXT, "660" -> RpcSocketConfig.MODE_0660;
                case RpcSocketConfig.MODE_0600_TEXT, "600" -> RpcSocketConfig.MODE_0600;
                default ->
                    throw root.error(
                            "rpc_socket_mode",
                            "'" + text + "' is not allowed: \"0660\" (owner and group) or \"0600\" (owner only)");
            };
        }
        String group = null;
        if (root.has("rpc_socket_group")) {
            JsonNode value = root.value("rpc_socket_group");
            if (value.isIntegralNumber() && value.canConvertToInt() && value.intValue() >= 0) {
                group = Integer.toString(value.intValue());
            } else if (value.isTextual() && !value.asText().isEmpty()) {
                group = value.asText();
            } else {
                throw root.error("rpc_socket_group", "must be a group name or a gid (a non-negative integer)");
            }
            try {
                // the JDK's lookup takes a name, or a number when no group has that name (getgrnam, then the gid)
                java.nio.file.FileSystems.getDefault()
                        .getUserPrincipalLookupService()
                        .lookupPrincipalByGroupName(group);
            } catch (java.nio.file.attribute.UserPrincipalNotFoundException e) {
                throw root.error("rpc_socket_group", "no group named '" + group + "'");
            } catch (IOException | UnsupportedOperationException e) {
                throw root.error("rpc_socket_group", "cannot look up group '" + group + "': " + e.getMessage());
            }
        }
        return new RpcSocketConfig(mode, group);
    }

    private static HugepagesConfig hugepages(ConfigNode node) throws ConfigException {
        if (node == null) {
            return HugepagesConfig.defaults();
        }
        node.requireMapping(HUGEPAGES_KEYS);
        boolean enabled = node.bool("enabled", true);
        int reserve = node.intValue("reserve", 0, 0, HugepagesConfig.MAX_RESERVE);
        int numaNode = node.has("node") ? node.intValue("node", 0, 0, 1023) : HugepagesConfig.ANY_NODE;
        if (reserve > 0 && !enabled) {
            throw node.error(
                    "reserve", "huge pages are reserved for the arena, which has them disabled (enabled: false)");
        }
        if (node.has("node") && reserve == 0) {
            throw node.error("node", "names the pool to reserve from, but reserve is 0");
        }
        long defaultSize =
                reserve > 0 ? reserve * HugepagesConfig.HUGEPAGE_SIZE_BYTES : HugepagesConfig.DEFAULT_ARENA_SIZE_BYTES;
        long size = node.longValue("arena_size_bytes", defaultSize);
        if (size <= 0 || size % HugepagesConfig.HUGEPAGE_SIZE_BYTES != 0) {
            throw node.error(
                    "arena_size_bytes",
                    "must be a positive multiple of " + HugepagesConfig.HUGEPAGE_SIZE_BYTES + " (2 MiB huge page), not "
                            + size);
        }
        return new HugepagesConfig(enabled, size, reserve, numaNode);
    }

    private static BdevConfig bdev(ConfigNode node) throws ConfigException {
        node.requireMapping(BDEV_KEYS);
        String name = name(node);
        // YAML reads an unquoted `type: null` as null, not as the string: that is the null bdev
        String type = node.isYamlNull("type") ? BdevConfig.TYPE_NULL : node.requiredString("type");
        Set<String> keys = BDEV_TYPE_KEYS.get(type);
        if (keys == null) {
            throw node.error("type", "unknown type '" + type + "' (block, file, malloc, nvme, null)");
        }
        for (String key : BDEV_KEYS) {
            if (node.has(key) && !keys.contains(key)) {
                throw node.error(
                        key,
                        "does not apply to type " + type + " (its keys: " + String.join(", ", new TreeSet<>(keys))
                                + ")");
            }
        }
        boolean readOnly = node.bool("read_only", false);
        boolean direct = node.bool("direct", false);
        int blockSize = blockSize(node);
        return switch (type) {
            case BdevConfig.TYPE_FILE -> fileBdev(node, name, readOnly, direct, blockSize);
            case BdevConfig.TYPE_BLOCK -> {
                String path = absolutePath(node);
                if (!isBlockDevice(Path.of(path))) {
                    throw node.error("path", "'" + path + "' is not a block device");
                }
                yield new BdevConfig(name, type, path, 0, readOnly, direct, blockSize);
            }
            case BdevConfig.TYPE_NVME -> {
                String device = node.string("device", null);
                String traddr = node.string("traddr", null);
                if ((device == null) == (traddr == null)) {
                    throw node.error(
                            device == null ? "traddr" : "device",
                            device == null ? "missing (give traddr or device)" : "give device or traddr, not both");
                }
                if (device != null && !NVME_DEVICE.matcher(device).matches()) {
                    throw node.error("device", "'" + device + "' is not an NVMe controller name like nvme0");
                }
                if (traddr != null && traddr.isEmpty()) {
                    throw node.error("traddr", "must not be empty");
                }
                String shortDevice = device == null ? null : device.substring(device.lastIndexOf('/') + 1);
                yield new BdevConfig(name, type, null, 0, readOnly, direct, blockSize, shortDevice, traddr);
            }
            default -> {
                long sizeBytes = memorySize(node, blockSize);
                yield new BdevConfig(name, type, null, sizeBytes, readOnly, false, blockSize);
            }
        };
    }

    private static int blockSize(ConfigNode node) throws ConfigException {
        long blockSizeValue = node.longValue("block_size", BdevConfig.DEFAULT_BLOCK_SIZE);
        if (!BLOCK_SIZES.contains(blockSizeValue)) {
            throw node.error("block_size", "must be 512, 1024, 2048 or 4096, not " + blockSizeValue);
        }
        return (int) blockSizeValue;
    }

    private static String absolutePath(ConfigNode node) throws ConfigException {
        String path = node.requiredString("path");
        if (!Path.of(path).isAbsolute()) {
            throw node.error("path", "must be an absolute path, not '" + path + "'");
        }
        return path;
    }

    /** {@code null} and {@code malloc}: {@code num_blocks} or {@code size_bytes}, in bytes. */
    private static long memorySize(ConfigNode node, int blockSize) throws ConfigException {
        boolean blocksGiven = node.has("num_blocks");
        boolean sizeGiven = node.has("size_bytes");
        if (!blocksGiven && !sizeGiven) {
            throw node.error("num_blocks", "missing (give num_blocks or size_bytes)");
        }
        long sizeBytes = 0;
        if (blocksGiven) {
            long blocks = node.longValue("num_blocks", 0);
            if (blocks <= 0 || blocks > MAX_BDEV_BYTES / blockSize) {
                throw node.error(
                        "num_blocks", "must be between 1 and " + MAX_BDEV_BYTES / blockSize + ", not " + blocks);
            }
            sizeBytes = blocks * blockSize;
        }
        if (sizeGiven) {
            long size = node.longValue("size_bytes", 0);
            if (size <= 0 || size % blockSize != 0 || size > MAX_BDEV_BYTES) {
                throw node.error(
                        "size_bytes",
                        "must be a positive multiple of " + blockSize + " (block_size) up to " + MAX_BDEV_BYTES
                                + ", not " + size);
            }
            if (blocksGiven && size != sizeBytes) {
                throw node.error("size_bytes", size + " differs from num_blocks * block_size (" + sizeBytes + ")");
            }
            sizeBytes = size;
        }
        return sizeBytes;
    }

    private static BdevConfig fileBdev(ConfigNode node, String name, boolean readOnly, boolean direct, int blockSize)
            throws ConfigException {
        String path = absolutePath(node);
        boolean sizeGiven = node.has("size_bytes");
        long sizeBytes = node.longValue("size_bytes", 0);
        if (sizeGiven && (sizeBytes <= 0 || sizeBytes % blockSize != 0)) {
            throw node.error(
                    "size_bytes",
                    sizeBytes <= 0
                            ? "must be positive, not " + sizeBytes
                            : "must be a multiple of " + blockSize + " (block_size), not " + sizeBytes);
        }
        Path file = Path.of(path);
        if (Files.exists(file)) {
            if (!Files.isRegularFile(file)) {
                throw node.error(
                        "path",
                        "'" + path + "' exists and is not a regular file"
                                + (isBlockDevice(file) ? " (a block device: use type block)" : ""));
            }
            long actual;
            try {
                actual = Files.size(file);
            } catch (IOException e) {
                throw node.error("path", "cannot read the size of '" + path + "': " + e);
            }
            if (sizeGiven && actual != sizeBytes) {
                throw node.error(
                        "size_bytes",
                        sizeBytes + " differs from the size of the existing file '" + path + "' (" + actual
                                + " bytes)");
            }
            if (actual == 0 || actual % blockSize != 0) {
                throw node.error(
                        "path",
                        "existing file '" + path + "' is " + actual + " bytes, not a positive multiple of " + blockSize
                                + " (block_size)");
            }
            sizeBytes = actual;
        } else {
            if (!sizeGiven) {
                throw node.error(
                        "size_bytes", "missing (file '" + path + "' does not exist, so its size must be given)");
            }
            if (readOnly) {
                throw node.error("path", "file '" + path + "' does not exist, and a read_only bdev cannot create it");
            }
        }
        return new BdevConfig(name, BdevConfig.TYPE_FILE, path, sizeBytes, readOnly, direct, blockSize);
    }

    /** S_IFBLK, read without following nothing but the path itself (a symlink to a device is fine). */
    private static boolean isBlockDevice(Path path) {
        try {
            int mode = (Integer) Files.getAttribute(path, "unix:mode");
            // S_IFMT / S_IFBLK from <sys/stat.h>
            return (mode & 0170000) == 0060000;
        } catch (IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    private static ControllerConfig controller(ConfigNode node, String runDir, List<BdevConfig> bdevs)
            throws ConfigException {
        node.requireMapping(CONTROLLER_KEYS);
        String name = name(node);
        String type = node.requiredString("type");
        if (!type.equals(ControllerConfig.TYPE_VHOST_USER_BLK)) {
            throw node.error("type", "unknown type '" + type + "' (" + ControllerConfig.TYPE_VHOST_USER_BLK + ")");
        }
        String bdevName = node.requiredString("bdev");
        // an nvme entry named N declares the bdevs Nn1, Nn2, ...: which exist is known when the controller is probed
        BdevConfig bdev = bdevs.stream()
                .filter(b -> b.name().equals(bdevName) && !b.type().equals(BdevConfig.TYPE_NVME)
                        || b.type().equals(BdevConfig.TYPE_NVME)
                                && bdevName.startsWith(b.name())
                                && NVME_NAMESPACE_SUFFIX
                                        .matcher(bdevName.substring(b.name().length()))
                                        .matches())
                .findFirst()
                .orElseThrow(() -> node.error("bdev", "no bdev named '" + bdevName + "'"));
        String socket = socketPath(node, "socket", runDir, null);
        int numQueues = node.intValue("num_queues", 1, 1, ControllerConfig.MAX_NUM_QUEUES);
        int queueSizeMax = node.intValue(
                "queue_size_max", ControllerConfig.DEFAULT_QUEUE_SIZE_MAX, 1, ControllerConfig.MAX_QUEUE_SIZE);
        if (Integer.bitCount(queueSizeMax) != 1) {
            throw node.error("queue_size_max", "must be a power of two, not " + queueSizeMax);
        }
        String serial = node.string("serial", null);
        if (serial == null) {
            serial = truncateUtf8(name, ControllerConfig.SERIAL_MAX_BYTES);
        } else if (serial.getBytes(StandardCharsets.UTF_8).length > ControllerConfig.SERIAL_MAX_BYTES) {
            throw node.error(
                    "serial", "longer than " + ControllerConfig.SERIAL_MAX_BYTES + " bytes (VIRTIO_BLK_ID_BYTES)");
        }
        boolean readOnly = node.bool("read_only", bdev.readOnly());
        if (bdev.readOnly() && !readOnly) {
            throw node.error("read_only", "false, but bdev '" + bdevName + "' is read-only");
        }
        return new ControllerConfig(name, type, bdevName, socket, numQueues, queueSizeMax, serial, readOnly);
    }

    private static SlaveConfig slave(ConfigNode node) throws ConfigException {
        if (node == null) {
            return SlaveConfig.defaults();
        }
        node.requireMapping(SLAVE_KEYS);
        List<String> javaOpts = new ArrayList<>();
        for (ConfigNode opt : node.list("java_opts")) {
            javaOpts.add(opt.asString());
        }
        int maxSegments =
                node.intValue("max_segments", SlaveConfig.DEFAULT_MAX_SEGMENTS, 1, SlaveConfig.MAX_MAX_SEGMENTS);
        long orphanTimeoutMs = node.intValue("orphan_timeout_ms", (int) SlaveConfig.DEFAULT_ORPHAN_TIMEOUT_MS, 0, (int)
                SlaveConfig.MAX_ORPHAN_TIMEOUT_MS);
        long standbyDelayMs = node.intValue("standby_delay_ms", (int) SlaveConfig.DEFAULT_STANDBY_DELAY_MS, 0, (int)
                SlaveConfig.MAX_STANDBY_DELAY_MS);
        // YAML 1.1 reads a bare off as false
        com.fasterxml.jackson.databind.JsonNode aot = node.value("aot_cache");
        String aotCache =
                aot != null && aot.isBoolean() && !aot.booleanValue() ? "off" : node.string("aot_cache", null);
        if (aotCache != null && !aotCache.equals("off") && !aotCache.startsWith("/")) {
            throw new ConfigException(
                    "slave.aot_cache", "must be an absolute directory or off, not \"" + aotCache + "\"");
        }
        return new SlaveConfig(javaOpts, maxSegments, orphanTimeoutMs, standbyDelayMs, aotCache);
    }

    private static String name(ConfigNode node) throws ConfigException {
        String name = node.requiredString("name");
        if (!NAME.matcher(name).matches()) {
            throw node.error("name", "'" + name + "' must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
        }
        return name;
    }

    /** A socket path: absolute, or relative to {@code runDir}; short enough for sockaddr_un. */
    private static String socketPath(ConfigNode node, String key, String runDir, String defaultName)
            throws ConfigException {
        String value = defaultName == null ? node.requiredString(key) : node.string(key, defaultName);
        String path = Path.of(runDir).resolve(value).normalize().toString();
        int length = path.getBytes(StandardCharsets.UTF_8).length;
        if (length > ControllerConfig.MAX_SOCKET_PATH_BYTES) {
            throw node.error(
                    key,
                    "'" + path + "' is " + length + " bytes, longer than the " + ControllerConfig.MAX_SOCKET_PATH_BYTES
                            + " a unix socket path may have (sun_path)");
        }
        return path;
    }

    /** The longest prefix of {@code s} whose UTF-8 encoding fits {@code maxBytes}, never splitting a character. */
    static String truncateUtf8(String s, int maxBytes) {
        int bytes = 0;
        int end = 0;
        while (end < s.length()) {
            int cp = s.codePointAt(end);
            int cpBytes = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (bytes + cpBytes > maxBytes) {
                break;
            }
            bytes += cpBytes;
            end += Character.charCount(cp);
        }
        return s.substring(0, end);
    }
}
