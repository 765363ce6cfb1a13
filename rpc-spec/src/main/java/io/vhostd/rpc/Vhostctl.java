package io.vhostd.rpc;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
 *   rpc METHOD [PARAMS]       any method, PARAMS as JSON; prints the result as JSON
 *   methods [NAME]            the methods of openrpc.json with their descriptions (no daemon needed)
 * </pre>
 *
 * <p>Exit codes: {@value #EXIT_OK} success; {@value #EXIT_RPC_ERROR} the daemon answered with an error (printed as
 * {@code error: <name> (<code>): <message>} on stderr); {@value #EXIT_UNREACHABLE} the daemon could not be reached or
 * broke the protocol; {@value #EXIT_USAGE} bad command line (sysexits {@code EX_USAGE}); {@value #EXIT_SOFTWARE} a fault
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

    /** Calls one method and hands the result to {@code printer}; maps failures to the exit codes. */
    int callAndPrint(String method, JsonNode params, ResultPrinter printer) {
        Path path = socketPath();
        if (timeoutMs <= 0) {
            err.println("error: --timeout-ms must be positive");
            return EXIT_USAGE;
        }
        try (RpcClient client = RpcClient.connect(path, Duration.ofMillis(timeoutMs))) {
            printer.print(client.call(method, params));
            return EXIT_OK;
        } catch (RpcException e) {
            RpcError error = e.error();
            err.println("error: " + error.name() + " (" + error.code() + "): " + error.message());
            return EXIT_RPC_ERROR;
        } catch (ConnectException e) {
            err.println("error: " + e.getMessage() + " (is the master running? see --socket or $" + SOCKET_ENV + ")");
            return EXIT_UNREACHABLE;
        } catch (IOException e) {
            err.println("error: talking to vhostd at " + path + ": " + e.getMessage());
            return EXIT_UNREACHABLE;
        }
    }

    void printJson(JsonNode node) throws JsonProcessingException {
        out.println(Json.MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(node));
    }

    @FunctionalInterface
    interface ResultPrinter {
        void print(JsonNode result) throws IOException;
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
