using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using LinqToDB;
using Microsoft.Extensions.DependencyInjection;
using TrEnv.Cluster.Membership;
using TrEnv.Cluster.Serialization;
using TrEnv.Contracts;

namespace TrEnv.Cluster;

/// <summary>The Akka.NET set-up every TrEnv node shares: remoting, cluster, downing, serializer, journal.</summary>
public static class NodeHosting
{
    public static IServiceCollection AddTrEnvNode(this IServiceCollection services, NodeSettings settings, Action<AkkaConfigurationBuilder, IServiceProvider> roleSpecific)
    {
        services.AddSingleton(settings);
        services.AddAkka(NodeSettings.SystemName, (builder, provider) =>
        {
            builder
                // Akka's own lines go through the node's logger (JSON by default), like every other line.
                .ConfigureLoggers(loggers =>
                {
                    loggers.LogLevel = Akka.Event.LogLevel.InfoLevel;
                    loggers.ClearLoggers();
                    loggers.AddLoggerFactory();
                })
                .AddHocon(Hocon(settings), HoconAddMode.Prepend)
                .WithRemoting(new RemoteOptions
                {
                    HostName = settings.Hostname,
                    PublicHostName = settings.PublicHostname ?? settings.Hostname,
                    Port = settings.Port,
                })
                .WithClustering(new ClusterOptions
                {
                    Roles = settings.Roles.ToArray(),
                    SeedNodes = settings.Seeds.Count > 0 ? settings.Seeds.ToArray() : [settings.SelfAddress],
                })
                // Workers publish their status and coordinators subscribe; the mediator runs on every node.
                .WithDistributedPubSub(role: "")
                .WithCustomSerializer("trenv", [typeof(IProtocolMessage)], system => new TrEnvSerializer(system))
                .AddGoneProcessDowning();

            if (settings.HasRole(Roles.Coordinator) || settings.HasRole(Roles.MemoryPool))
            {
                Directory.CreateDirectory(settings.DataDirectory);
                if (settings.DatabaseConnection is { } pg)
                    builder.WithSqlPersistence(connectionString: pg, providerName: ProviderName.PostgreSQL15, autoInitialize: true);
                else
                {
                    UseWriteAheadLog(settings.SqliteConnection);
                    builder.WithSqlPersistence(connectionString: settings.SqliteConnection, providerName: ProviderName.SQLiteMS, autoInitialize: true);
                }
            }
            roleSpecific(builder, provider);
        });
        return services;
    }

    // A write-ahead log: one fsync per committed event instead of the rollback journal's several, and still
    // durable across a killed process (synchronous stays FULL). The mode is stored in the file itself.
    private static void UseWriteAheadLog(string connectionString)
    {
        using var connection = new Microsoft.Data.Sqlite.SqliteConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode=WAL;";
        command.ExecuteScalar();
    }

    // Failover timings measured in DESIGN.md section 7: downed after about 7.5 s instead of 24 s. A killed
    // process is downed sooner by GoneProcessDowning; these bound partitions and pauses.
    private static string Hocon(NodeSettings settings) => $$"""
        akka {
          # Worker status broadcasts reach no one until coordinators subscribe; that is expected at start-up.
          log-dead-letters = off
          # SIGTERM stops the host, which stops its services in order (a coordinator's HTTP server drains its
          # requests first) and then runs coordinated shutdown; Akka's own hook would leave the cluster at once.
          coordinated-shutdown.run-by-clr-shutdown-hook = off
          # A node restarted at the same address, or started before its seeds, reconnects within a second
          # instead of waiting out a 5 s gate after each refused attempt.
          remote.retry-gate-closed-for = 1s
          cluster {
            # A node that starts before its seeds keeps asking; the first seed forms the cluster alone after this.
            seed-node-timeout = 3s
            # A restarted node's first join is often refused while the cluster still lists its old incarnation:
            # ask again soon. Gossip, leader actions and the pub-sub registry run twice a second, so a restarted
            # coordinator is Up and hears the workers' status broadcasts about a second sooner.
            retry-unsuccessful-join-after = 1s
            gossip-interval = 500ms
            leader-actions-interval = 500ms
            pub-sub.gossip-interval = 500ms
            # Keep-majority from the coordinators' own view (ControlPlaneDowning), so workers that only lose each
            # other are not downed as Akka's resolver would down them ("indirectly connected").
            downing-provider-class = "TrEnv.Cluster.Membership.ControlPlaneDowningProvider, TrEnv.Cluster"
            split-brain-resolver.stable-after = 3s
            down-removal-margin = 1s
            failure-detector.acceptable-heartbeat-pause = 2s
            sharding {
              state-store-mode = ddata
              remember-entities = off
              passivate-idle-entity-after = 10m
            }
          }
          # Modules travel to workers as one message; the deploy limit bounds them.
          remote.dot-netty.tcp {
            maximum-frame-size = {{(settings.MaxModuleMb + 1) * 1024 * 1024}}b
            send-buffer-size = {{(settings.MaxModuleMb + 2) * 1024 * 1024}}b
            receive-buffer-size = {{(settings.MaxModuleMb + 2) * 1024 * 1024}}b
            batching.enabled = false
          }
        }
        """;
}
