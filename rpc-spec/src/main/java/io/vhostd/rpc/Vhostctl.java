package io.vhostd.rpc;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.rpc.cli.HistogramFormat;
import io.vhostd.rpc.cli.IostatFormat;
import io.vhostd.rpc.cli.SmartLogFormat;
import io.vhostd.rpc.cli.TraceFormat;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.ConnectException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code vhostctl}: the command-line client of the master's RPC socket.
 *
 * <pre>
 * vhostctl [--socket PATH] [--json] [--timeout-ms MS] COMMAND
 *   bdevs [NAME]              bdev_get_bdevs as a table (JSON with --json)
 *   controllers [NAME]        vhost_get_controllers as a table (JSON with --json)
 *   slaves                    slave_get_slaves as a table
 *   slaves upgrade [--jar PATH]
 *                             slave_upgrade: rolling upgrade, prints each controller's pause (SlavesUpgrade)
 *   iostat [-x] [-d NAME] [INTERVAL [COUNT]]
 *                             bdev_get_iostat in sysstat iostat's layout (IostatFormat)
 *   smart-log BDEV            bdev_nvme_get_controller_health_info in nvme-cli's smart-log layout (SmartLogFormat)
 *   histogram BDEV [--segment S] [--op O]
 *                             bdev_get_histogram as text bars with percentiles (HistogramFormat)
 *   trace start|stop [CTRLR]  trace_start / trace_stop
 *   trace dump [CTRLR] [--max N]
 *                             trace_get_events in a blkparse-like layout (TraceFormat)
 *   rpc METHOD [PARAMS]       any method, PARAMS as JSON; prints the result as JSON
 *   methods [NAME]            the methods of openrpc.json with their descriptions (no daemon needed)
 * </pre>
 *
 * <p>{@code --json} makes every command print the method's raw result instead of its table or layout. The help of
 * each command that calls one method starts with that method's summary from openrpc.json.
 *
 * <p>Exit codes: {@value #EXIT_OK} success; {@value #EXIT_RPC_ERROR} the daemon answered with an error (printed as
 * {@code error: <name>: <message>} on stderr); {@value #EXIT_UNREACHABLE} the daemon could not be reached or broke
 * the protocol; {@value #EXIT_NOPERM} the socket refused us (connect EACCES, or the daemon answered {@code
 * permission_denied}: not root, not its user, not in its socket's group; sysexits {@code EX_NOPERM}); {@value #EXIT_USAGE} bad command line (sysexits {@code EX_USAGE}); {@value #EXIT_SOFTWARE} a fault
 * in vhostctl itself.
 */
@Command(
        name = "vhostctl",
        mixinStandardHelpOptions = true,
        versionProvider = Vhostctl.Version.class,
        synopsisSubcommandLabel = "COMMAND",
        description = "Command-line client of the vhostd master's JSON-RPC socket.",
        subcommands = {
            Vhostctl.Bdevs.class,
            Vhostctl.Controllers.class,
            Vhostctl.Slaves.class,
            Vhostctl.Iostat.class,
            Vhostctl.SmartLog.class,
            Vhostctl.Histogram.class,
            Vhostctl.Trace.class,
            Vhostctl.Rpc.class,
            Vhostctl.Methods.class,
            CommandLine.HelpCommand.class
        })
public final class Vhostctl implements Callable<Integer> {
    /** Environment variable naming the socket when {@code --socket} is not given. */
    public static final String SOCKET_ENV = "VHOSTD_RPC_SOCKET";

    /** Success. */
    public static final int EXIT_OK = 0;

    /** The daemon answered with an error response. */
    public static final int EXIT_RPC_ERROR = 1;

    /** The daemon could not be reached (no socket, refused, timeout) or broke the protocol. */
    public static final int EXIT_UNREACHABLE = 2;

    /** Permission denied by the socket's mode or the daemon's peer check (sysexits.h EX_NOPERM). */
    public static final int EXIT_NOPERM = 77;

    /** Bad command line (sysexits.h EX_USAGE). */
    public static final int EXIT_USAGE = 64;

    /** A fault in vhostctl itself (sysexits.h EX_SOFTWARE). */
    public static final int EXIT_SOFTWARE = 70;

    @Option(
            names = "--socket",
            paramLabel = "PATH",
            description = "RPC socket of the master (default: $" + SOCKET_ENV + ", else /run/vhostd/rpc.sock).")
    private Path socket;

    @Option(names = "--json", description = "Print results as JSON instead of tables.")
    private boolean json;

    @Option(
            names = "--timeout-ms",
            paramLabel = "MS",
            defaultValue = "30000",
            description = "Deadline of each call in milliseconds (default: ${DEFAULT-VALUE}).")
    private long timeoutMs;

    private final PrintWriter out;
    private final PrintWriter err;
    private final Map<String, String> env;

    private Vhostctl(PrintWriter out, PrintWriter err, Map<String, String> env) {
        this.out = out;
        this.err = err;
        this.env = env;
    }

    /** Runs vhostctl with the process's stdout, stderr and environment; returns the exit code. */
    public static int run(String... args) {
        PrintWriter out = new PrintWriter(System.out, true, StandardCharsets.UTF_8);
        PrintWriter err = new PrintWriter(System.err, true, StandardCharsets.UTF_8);
        return run(out, err, System.getenv(), args);
    }

    /**
     * Runs vhostctl with the given output streams and environment (for tests and embedding); returns the exit code.
     * Both writers are flushed before returning.
     */
    public static int run(PrintWriter out, PrintWriter err, Map<String, String> env, String... args) {
        CommandLine cmd = new CommandLine(new Vhostctl(out, err, env));
        describeFromSpec(cmd);
        cmd.setOut(out);
        cmd.setErr(err);
        cmd.setParameterExceptionHandler((e, a) -> {
            err.println("error: " + e.getMessage());
            e.getCommandLine().usage(err);
            return EXIT_USAGE;
        });
        cmd.setExecutionExceptionHandler((e, c, p) -> {
            err.println("error: vhostctl failed: " + e);
            return EXIT_SOFTWARE;
        });
        try {
            return cmd.execute(args);
        } finally {
            out.flush();
            err.flush();
        }
    }

    public static void main(String[] args) {
        System.exit(run(args));
    }

    @Spec
    private CommandSpec spec;

    @Override
    public Integer call() {
        throw new CommandLine.ParameterException(spec.commandLine(), "missing COMMAND");
    }

    Path socketPath() {
        if (socket != null) {
            return socket;
        }
        String fromEnv = env.get(SOCKET_ENV);
        return fromEnv != null && !fromEnv.isEmpty() ? Path.of(fromEnv) : RpcClient.DEFAULT_SOCKET;
    }

    /** The method each command calls: its help text starts with the method's summary from openrpc.json. */
    static final Map<String, String> COMMAND_METHODS = Map.of(
            "bdevs", "bdev_get_bdevs",
            "controllers", "vhost_get_controllers",
            "slaves", "slave_get_slaves",
            "iostat", "bdev_get_iostat",
            "smart-log", "bdev_nvme_get_controller_health_info",
            "histogram", "bdev_get_histogram",
            "trace", "trace_get_events");

    /** Prefixes each command's description with its method's summary (when openrpc.json describes the method). */
    private static void describeFromSpec(CommandLine cmd) {
        RpcSpec spec = RpcSpec.load();
        COMMAND_METHODS.forEach((command, method) -> {
            CommandLine sub = cmd.getSubcommands().get(command);
            if (sub != null) {
                spec.method(method).ifPresent(m -> {
                    String[] own = sub.getCommandSpec().usageMessage().description();
                    String[] description = new String[own.length + 1];
                    description[0] = m.summary() + " (" + method + ").";
                    System.arraycopy(own, 0, description, 1, own.length);
                    sub.getCommandSpec().usageMessage().description(description);
                });
            }
        });
    }

    /** Something done with one connected client; may call several methods. */
    @FunctionalInterface
    interface ClientAction {
        void run(RpcClient client) throws IOException, RpcException, InterruptedException;
    }

    /** Calls one method and hands the result to {@code printer}; maps failures to the exit codes. */
    int callAndPrint(String method, JsonNode params, ResultPrinter printer) {
        return withClient(client -> printer.print(client.call(method, params)));
    }

    /** Connects, runs {@code action}, and maps failures to the exit codes (messages on stderr). */
    int withClient(ClientAction action) {
        Path path = socketPath();
        if (timeoutMs <= 0) {
            err.println("error: --timeout-ms must be positive");
            return EXIT_USAGE;
        }
        try (RpcClient client = RpcClient.connect(path, Duration.ofMillis(timeoutMs))) {
            action.run(client);
            return EXIT_OK;
        } catch (RpcException e) {
            RpcError error = e.error();
            err.println("error: " + error.name() + ": " + error.message());
            return error.errorCode().orElse(null) == RpcErrorCode.PERMISSION_DENIED ? EXIT_NOPERM : EXIT_RPC_ERROR;
        } catch (ConnectException e) {
            boolean denied = e.getMessage() != null && e.getMessage().contains("Permission denied");
            err.println("error: " + e.getMessage()
                    + (denied
                            ? " (the socket is for root, vhostd's user and its group)"
                            : " (is the master running? see --socket or $" + SOCKET_ENV + ")"));
            return denied ? EXIT_NOPERM : EXIT_UNREACHABLE;
        } catch (IOException e) {
            err.println("error: talking to vhostd at " + path + ": " + e.getMessage());
            return EXIT_UNREACHABLE;
        } catch (IllegalArgumentException e) {
            err.println("error: cannot show the answer: " + e.getMessage());
            return EXIT_SOFTWARE;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return EXIT_SOFTWARE;
        }
    }

    void printJson(JsonNode node) throws JsonProcessingException {
        out.println(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(node));
    }

    @FunctionalInterface
    interface ResultPrinter {
        void print(JsonNode result) throws IOException;
    }

    /** Does every bdev of a {@code bdev_get_iostat} result say when its counters started? */
    static boolean hasStartTicks(JsonNode iostat) {
        if (iostat.hasNonNull("start_ticks")) {
            return true;
        }
        for (JsonNode bdev : iostat.path("bdevs")) {
            if (!bdev.hasNonNull("start_ticks")) {
                return false;
            }
        }
        return true;
    }

    static ObjectNode nameParam(String name) {
        ObjectNode params = Json.NODES.objectNode();
        if (name != null) {
            params.put("name", name);
        }
        return params;
    }

    @Command(name = "bdevs", description = "List bdevs (bdev_get_bdevs).")
    static final class Bdevs implements Callable<Integer> {
        @ParentCommand
        private Vhostctl parent;

        @Parameters(arity = "0..1", paramLabel = "NAME", description = "Only this bdev.")
        private String name;

        @Override
        public Integer call() {
            return parent.callAndPrint("bdev_get_bdevs", nameParam(name), result -> {
                if (parent.json) {
                    parent.printJson(result);
                    return;
                }
                Table table = new Table("NAME", "TYPE", "SIZE", "BLOCK_SIZE", "BLOCKS", "RO", "ENGINE", "PATH");
                for (JsonNode b : result) {
                    table.row(
                            field(b, "name"),
                            field(b, "type"),
                            humanBytes(b.get("size_bytes")),
                            field(b, "block_size"),
                            field(b, "num_blocks"),
                            field(b, "read_only"),
                            field(b, "engine"),
                            field(b, "path"));
                }
                table.print(parent.out);
            });
        }
    }

    @Command(name = "controllers", description = "List vhost controllers (vhost_get_controllers).")
    static final class Controllers implements Callable<Integer> {
        @ParentCommand
        private Vhostctl parent;

        @Parameters(arity = "0..1", paramLabel = "NAME", description = "Only this controller.")
        private String name;

        @Override
        public Integer call() {
            return parent.callAndPrint("vhost_get_controllers", nameParam(name), result -> {
                if (parent.json) {
                    parent.printJson(result);
                    return;
                }
                Table table = new Table("NAME", "TYPE", "BDEV", "QUEUES", "SLAVE_PID", "SESSION", "SOCKET");
                for (JsonNode c : result) {
                    table.row(
                            field(c, "name"),
                            field(c, "type"),
                            field(c, "bdev"),
                            field(c, "num_queues"),
                            field(c, "slave_pid"),
                            sessionState(c.get("sessions")),
                            field(c, "socket"));
                }
                table.print(parent.out);
            });
        }

        private static String sessionState(JsonNode sessions) {
            if (sessions == null || !sessions.isArray() || sessions.isEmpty()) {
                return "-";
            }
            for (JsonNode s : sessions) {
                if (s.path("connected").asBoolean(false)) {
                    return "connected";
                }
            }
            return "disconnected";
        }
    }

    @Command(
            name = "slaves",
            description = "List the slave processes with their roles.",
            subcommands = {SlavesUpgrade.class})
    static final class Slaves implements Callable<Integer> {
        @ParentCommand
        Vhostctl parent;

        @Override
        public Integer call() {
            return parent.callAndPrint("slave_get_slaves", Json.NODES.objectNode(), result -> {
                if (parent.json) {
                    parent.printJson(result);
                    return;
                }
                Table table = new Table("SLAVE_ID", "PID", "ROLE", "STARTED", "CONTROLLERS", "BUILD");
                for (JsonNode s : result.path("slaves")) {
                    List<String> names = new ArrayList<>();
                    s.path("controllers").forEach(c -> names.add(c.asText()));
                    long started = s.path("started_unix_ms").asLong();
                    table.row(
                            field(s, "slave_id"),
                            field(s, "pid"),
                            field(s, "role"),
                            started == 0
                                    ? "-"
                                    : java.time.Instant.ofEpochMilli(started).toString(),
                            names.isEmpty() ? "-" : String.join(",", names),
                            field(s, "build"));
                }
                table.print(parent.out);
            });
        }
    }

    @Command(
            name = "iostat",
            description = {
                "Report I/O statistics per bdev in sysstat iostat's layout: the first report covers the time since the"
                        + " counters started (master start or bdev_reset_iostat) when the daemon gives start_ticks,"
                        + " else the first INTERVAL (1 s without one); each later report the INTERVAL before it."
                        + " Without INTERVAL one report; with INTERVAL and no COUNT, reports until interrupted."
            })
    static final class Iostat implements Callable<Integer> {
        @ParentCommand
        Vhostctl parent;

        @Option(names = "-x", description = "Extended statistics (r/s, rkB/s, r_await, ..., aqu-sz, %%util).")
        boolean extended;

        @Option(names = "-d", paramLabel = "NAME", description = "Only this bdev.")
        String device;

        @Parameters(index = "0", arity = "0..1", paramLabel = "INTERVAL", description = "Seconds between reports.")
        Integer intervalSeconds;

        @Parameters(index = "1", arity = "0..1", paramLabel = "COUNT", description = "Number of reports.")
        Integer count;

        @Override
        public Integer call() {
            if (intervalSeconds != null && intervalSeconds <= 0 || count != null && count <= 0) {
                parent.err.println("error: INTERVAL and COUNT must be positive");
                return EXIT_USAGE;
            }
            int reports = intervalSeconds == null ? 1 : count == null ? Integer.MAX_VALUE : count;
            ObjectNode params = nameParam(device);
            return parent.withClient(client -> {
                JsonNode previous = null;
                for (int i = 0; i < reports; i++) {
                    if (i > 0) {
                        Thread.sleep(intervalSeconds * 1000L);
                    }
                    JsonNode current = client.call("bdev_get_iostat", params);
                    if (previous == null && !parent.json && !hasStartTicks(current)) {
                        // no start time to rate the counters against: the first report covers one interval
                        previous = current;
                        Thread.sleep(intervalSeconds == null ? 1000L : intervalSeconds * 1000L);
                        current = client.call("bdev_get_iostat", params);
                    }
                    if (parent.json) {
                        parent.printJson(current);
                    } else {
                        parent.out.print(IostatFormat.format(previous, current, extended, device));
                    }
                    parent.out.flush();
                    previous = current;
                }
            });
        }
    }

    @Command(name = "smart-log", description = "SMART / health information of a bdev in nvme-cli's smart-log layout.")
    static final class SmartLog implements Callable<Integer> {
        @ParentCommand
        Vhostctl parent;

        @Parameters(index = "0", paramLabel = "BDEV", description = "An nvme bdev (or controller name), or any bdev.")
        String name;

        @Override
        public Integer call() {
            return parent.callAndPrint("bdev_nvme_get_controller_health_info", nameParam(name), result -> {
                if (parent.json) {
                    parent.printJson(result);
                } else {
                    parent.out.print(SmartLogFormat.format(result));
                }
            });
        }
    }

    @Command(name = "histogram", description = "Latency histograms of a bdev as text bars with p50/p90/p99/p99.9.")
    static final class Histogram implements Callable<Integer> {
        @ParentCommand
        Vhostctl parent;

        @Parameters(index = "0", paramLabel = "BDEV", description = "The bdev.")
        String name;

        @Option(
                names = "--segment",
                paramLabel = "S",
                description = "fetch_to_submit, submit_to_device, device, device_to_used, used_to_notify or total.")
        String segment;

        @Option(names = "--op", paramLabel = "O", description = "read, write, flush, unmap or write_zeroes.")
        String op;

        @Override
        public Integer call() {
            ObjectNode params = nameParam(name);
            if (segment != null) {
                params.put("segment", segment);
            }
            if (op != null) {
                params.put("op", op);
            }
            return parent.callAndPrint("bdev_get_histogram", params, result -> {
                if (parent.json) {
                    parent.printJson(result);
                } else {
                    parent.out.print(HistogramFormat.format(result));
                }
            });
        }
    }

    @Command(
            name = "trace",
            description = {
                "Switch the per-controller request trace on or off (all controllers when CTRLR is omitted), or dump"
                        + " it in a blkparse-like layout."
            })
    static final class Trace implements Callable<Integer> {
        @ParentCommand
        Vhostctl parent;

        @Parameters(index = "0", paramLabel = "ACTION", description = "start, stop or dump.")
        String action;

        @Parameters(index = "1", arity = "0..1", paramLabel = "CTRLR", description = "Only this controller.")
        String controller;

        @Option(
                names = "--max",
                paramLabel = "N",
                description = "dump: at most N events (default 1000, at most 65536).")
        Integer max;

        @Override
        public Integer call() {
            ObjectNode params = Json.NODES.objectNode();
            if (controller != null) {
                params.put("controller", controller);
            }
            switch (action) {
                case "start", "stop" -> {
                    return parent.callAndPrint("trace_" + action, params, result -> {
                        if (parent.json) {
                            parent.printJson(result);
                        } else {
                            parent.out.println("trace " + (action.equals("start") ? "started" : "stopped") + " on "
                                    + (controller == null ? "every controller" : controller));
                        }
                    });
                }
                case "dump" -> {
                    if (max != null) {
                        params.put("max", max);
                    }
                    return parent.callAndPrint("trace_get_events", params, result -> {
                        if (parent.json) {
                            parent.printJson(result);
                        } else {
                            parent.out.print(TraceFormat.format(result));
                        }
                    });
                }
                default -> {
                    parent.err.println("error: ACTION must be start, stop or dump, not '" + action + "'");
                    return EXIT_USAGE;
                }
            }
        }
    }

    @Command(name = "rpc", description = "Call any method; prints its result as JSON.")
    static final class Rpc implements Callable<Integer> {
        @ParentCommand
        private Vhostctl parent;

        @Parameters(
                index = "0",
                paramLabel = "METHOD",
                completionCandidates = MethodNames.class,
                description = "Method name, one of: ${COMPLETION-CANDIDATES} (see: vhostctl methods).")
        private String method;

        @Parameters(
                index = "1",
                arity = "0..1",
                paramLabel = "PARAMS",
                description = "Params as a JSON object or array, e.g. '{\"name\":\"disk0\"}'.")
        private String paramsJson;

        @Override
        public Integer call() {
            JsonNode params = null;
            if (paramsJson != null) {
                try {
                    params = Json.MAPPER.readTree(paramsJson);
                } catch (JsonProcessingException e) {
                    parent.err.println("error: PARAMS is not valid JSON: " + e.getOriginalMessage());
                    return EXIT_USAGE;
                }
                if (params == null || !(params.isObject() || params.isArray())) {
                    parent.err.println("error: PARAMS must be a JSON object or array");
                    return EXIT_USAGE;
                }
            }
            return parent.callAndPrint(method, params, parent::printJson);
        }
    }

    @Command(name = "methods", description = "Describe the RPC methods (from openrpc.json; no daemon needed).")
    static final class Methods implements Callable<Integer> {
        @ParentCommand
        private Vhostctl parent;

        @Parameters(arity = "0..1", paramLabel = "NAME", description = "Only this method.")
        private String name;

        @Override
        public Integer call() throws JsonProcessingException {
            RpcSpec spec = RpcSpec.load();
            List<RpcSpec.Method> methods = new ArrayList<>();
            if (name == null) {
                methods.addAll(spec.methods());
                methods.sort((a, b) -> a.name().compareTo(b.name()));
            } else if (spec.method(name).isPresent()) {
                methods.add(spec.method(name).get());
            } else {
                parent.err.println("error: no method named '" + name + "' in the RPC description");
                return EXIT_RPC_ERROR;
            }
            if (parent.json) {
                // the document's own method objects, so --json shows everything the description says
                List<String> names = methods.stream().map(RpcSpec.Method::name).toList();
                ArrayNode array = Json.NODES.arrayNode();
                for (JsonNode m : spec.document().path("methods")) {
                    if (names.contains(m.path("name").asText())) {
                        array.add(m);
                    }
                }
                parent.printJson(array);
                return EXIT_OK;
            }
            for (RpcSpec.Method m : methods) {
                parent.out.println(m.name() + " - " + m.summary());
                parent.out.println("    " + m.description());
                for (RpcSpec.Param p : m.params()) {
                    parent.out.println(
                            "    " + p.name() + " (" + p.schema().path("type").asText("any") + ", "
                                    + (p.required() ? "required" : "optional") + "): " + p.description());
                }
                parent.out.println("    result: " + m.resultName() + " - " + m.resultDescription());
                if (!m.errorNames().isEmpty()) {
                    parent.out.println("    errors: " + String.join(", ", m.errorNames()));
                }
            }
            return EXIT_OK;
        }
    }

    /** The method names of openrpc.json, for the help text and shell completion of {@code rpc METHOD}. */
    static final class MethodNames implements Iterable<String> {
        @Override
        public Iterator<String> iterator() {
            return RpcSpec.load().methodNames().iterator();
        }
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            return new String[] {"vhostctl (RPC description " + RpcSpec.load().version() + ")"};
        }
    }

    /** A JSON member as table text: "-" when absent or null; numbers, booleans and strings as written. */
    static String field(JsonNode node, String name) {
        JsonNode value = node == null ? null : node.get(name);
        if (value == null || value.isNull() || value.isMissingNode()) {
            return "-";
        }
        return value.isValueNode() ? value.asText() : value.toString();
    }

    /** Bytes in binary units with one decimal ("1.0 GiB"); "-" when absent or not an integer. */
    static String humanBytes(JsonNode value) {
        if (value == null || !value.canConvertToLong()) {
            return "-";
        }
        long bytes = value.longValue();
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        int unit = 0;
        double scaled = bytes;
        while (Math.abs(scaled) >= 1024 && unit < units.length - 1) {
            scaled /= 1024;
            unit++;
        }
        return unit == 0 ? bytes + " B" : String.format(Locale.ROOT, "%.1f %s", scaled, units[unit]);
    }

    /** Left-aligned text columns, two spaces apart. */
    static final class Table {
        private final List<String[]> rows = new ArrayList<>();

        Table(String... header) {
            rows.add(header);
        }

        void row(String... cells) {
            rows.add(cells);
        }

        void print(PrintWriter out) {
            int columns = rows.get(0).length;
            int[] widths = new int[columns];
            for (String[] row : rows) {
                for (int i = 0; i < columns; i++) {
                    widths[i] = Math.max(widths[i], row[i].length());
                }
            }
            for (String[] row : rows) {
                StringBuilder line = new StringBuilder();
                for (int i = 0; i < columns; i++) {
                    line.append(row[i]);
                    if (i < columns - 1) {
                        line.append(" ".repeat(widths[i] - row[i].length() + 2));
                    }
                }
                out.println(line);
            }
        }
    }
}
