import { Command } from "commander";

const program = new Command("duet").description("High availability for a pair of Linux hosts with no shared storage.");

program
  .command("demo")
  .description("run two agents on this machine, fail the active one and explain the takeover")
  .action(() => {
    console.log("duet demo: the agents are not built yet; see README.md for what exists today.");
  });

await program.parseAsync(process.argv);
