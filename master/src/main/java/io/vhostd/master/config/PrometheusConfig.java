package io.vhostd.master.config;

import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The Prometheus endpoint (key {@code prometheus}, off when absent): {@code prometheus: {listen: "127.0.0.1:9465"}}
 * serves {@code GET /metrics} over plain HTTP on that address (docs/observability.md).
 *
 * @param listenHost the address to bind: an IPv4 literal, an IPv6 literal (written {@code [::1]:9465} in the key) or a
 *     host name; null when the endpoint is off
 * @param listenPort the TCP port, 1..65535, or 0 for any free port (the chosen one is logged; meant for tests)
 */
public record PrometheusConfig(String listenHost, int listenPort) {
    /** No endpoint. */
    public static final PrometheusConfig DISABLED = new PrometheusConfig(null, 0);

    /** The port Prometheus' default port allocation list gives no exporter yet; only a suggestion for configs. */
    public static final int SUGGESTED_PORT = 9465;

    static final Set<String> KEYS = Set.of("listen");

    // [v6]:port | host-or-v4:port
    private static final Pattern LISTEN = Pattern.compile("(?:\\[([0-9A-Fa-f:.]+)]|([A-Za-z0-9.-]+)):([0-9]{1,5})");

    public PrometheusConfig {
        if (listenPort < 0 || listenPort > 65535) {
            throw new IllegalArgumentException("port " + listenPort + " outside 0..65535");
        }
        if (listenHost != null && listenHost.isEmpty()) {
            throw new IllegalArgumentException("listen host must not be empty");
        }
    }

    /** True when the endpoint is configured. */
    public boolean enabled() {
        return listenHost != null;
    }

    /** The {@code listen} value as the configuration writes it, e.g. {@code 127.0.0.1:9465} or {@code [::1]:9465}. */
    public String listenText() {
        return (listenHost.indexOf(':') >= 0 ? "[" + listenHost + "]" : listenHost) + ":" + listenPort;
    }

    /** Parses the {@code prometheus} mapping; null (absent) means {@link #DISABLED}. */
    static PrometheusConfig parse(ConfigNode node) throws ConfigException {
        if (node == null) {
            return DISABLED;
        }
        node.requireMapping(KEYS);
        String listen = node.requiredString("listen");
        Matcher m = LISTEN.matcher(listen);
        if (!m.matches()) {
            throw node.error("listen", "'" + listen + "' is not HOST:PORT (e.g. \"127.0.0.1:9465\" or \"[::1]:9465\")");
        }
        String host = m.group(1) != null ? m.group(1) : m.group(2);
        if (m.group(1) != null && host.indexOf(':') < 0) {
            throw node.error("listen", "'" + listen + "': brackets are for IPv6 addresses only");
        }
        int port = Integer.parseInt(m.group(3));
        if (port > 65535) {
            throw node.error("listen", "'" + listen + "': port " + port + " is above 65535");
        }
        return new PrometheusConfig(host, port);
    }
}
