/**
 * The master's registry of bdevs (and, with issue #5, controllers): {@link io.vhostd.master.registry.BdevRegistry}
 * holds what runs (open bdevs, their engines, which controller claims each), {@link
 * io.vhostd.master.registry.PersistentRegistry} keeps what RPC created in a Chronicle Map file, so a restarted master
 * recreates it.
 *
 * <p>Role: master.
 */
package io.vhostd.master.registry;
