package io.vhostd.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/**
 * {@code vhostctl slaves upgrade [--jar PATH]}: {@code slave_upgrade} (issue #4 rolling upgrade). Prints which slave
 * serves the controllers now and each controller's guest-visible pause; with {@code vhostctl --json} the raw result.
 * An upgrade may wait for the standby to start: raise {@code --timeout-ms} on a slow machine.
 */
@Command(
        name = "upgrade",
        description = {
            "Rolling upgrade (slave_upgrade): start a slave from --jar (default: the warm standby, same build), check"
                    + " its versions, and move every controller to it one at a time; the old slave exits."
        })
final class SlavesUpgrade implements Callable<Integer> {
    @ParentCommand
    private Vhostctl.Slaves slaves;

    @Spec
    private CommandSpec spec;

    @Option(
            names = "--jar",
            paramLabel = "PATH",
            description = "The vhostd jar the new slave runs (default: the running build).")
    private Path jar;

    @Override
    public Integer call() {
        ObjectNode params = Json.NODES.objectNode();
        if (jar != null) {
            params.put("jar", jar.toAbsolutePath().toString());
        }
        Vhostctl vhostctl = slaves.parent;
        // vhostctl's own --json (an option of the top-level command)
        boolean json = Boolean.TRUE.equals(spec.root().findOption("--json").getValue());
        return vhostctl.callAndPrint("slave_upgrade", params, result -> {
            if (json) {
                vhostctl.printJson(result);
                return;
            }
            java.io.PrintWriter out = spec.commandLine().getOut();
            out.println(Vhostctl.field(result, "slave_id") + " (pid " + Vhostctl.field(result, "pid")
                    + ") serves every controller now");
            Vhostctl.Table table = new Vhostctl.Table("CONTROLLER", "PAUSE_US");
            for (JsonNode c : result.path("controllers")) {
                table.row(Vhostctl.field(c, "name"), Vhostctl.field(c, "pause_us"));
            }
            table.print(out);
        });
    }
}
