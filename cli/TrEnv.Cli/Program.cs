using TrEnv.Cli;

// trenv: the command-line client of the HTTP API v1 (CliApp lists the commands).
return await new CliApp(Console.Out, Console.Error).RunAsync(args);
