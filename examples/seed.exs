# The seed notebook's cells as an Elixir script, calling the Python exmc node with :erpc.call.
#
#   make demo-elixir                 # starts exmc@127.0.0.14 and runs this script against it
#   elixir --name livebook@127.0.0.1 --cookie COOKIE examples/seed.exs exmc@127.0.0.14 [SEED]
#
# The model is data (one map per IR node, the fields of exmc's Python IR); the exmc node runs
# Elixir.Exmc.NUTS.Sampler.sample_chains/3 (exmc.interop) and returns one map per chain from a
# variable's name to its draws (lists of floats), so chain["mu"] works as in the seed.

[target | rest] =
  case System.argv() do
    [] -> ["exmc@127.0.0.14"]
    argv -> argv
  end

target = String.to_atom(target)
seed = case rest do
  [s | _] -> String.to_integer(s)
  [] -> 0
end

# --- Cell 1: connect -----------------------------------------------------------------------
IO.puts("I am: #{Node.self()}")
connected = Node.connect(target)
IO.puts("My peers: #{inspect(Node.list())}")
IO.puts("exmc connected: #{connected}")
unless connected, do: System.halt(1)

# --- Cell 2: the model, as data ------------------------------------------------------------
observations = [2.1, 2.5, 1.8, 2.3, 2.7, 1.9, 2.4, 2.2, 2.6, 2.0]

ir = [
  %{rv: "mu", dist: "Normal", params: %{mu: 0.0, sigma: 10.0}},
  %{rv: "sigma", dist: "HalfNormal", params: %{sigma: 2.0}},
  %{rv: "y", dist: "Normal", params: %{mu: "mu", sigma: "sigma"}},
  %{obs: "y_obs", rv: "y", value: observations}
]

IO.puts("Model defined (#{length(observations)} observations, estimating mu and sigma)")
IO.puts("Will sample on: #{target}")

# --- Cell 3: sample on the exmc node --------------------------------------------------------
{micros, chains} =
  :timer.tc(fn ->
    :erpc.call(target, Exmc.NUTS.Sampler, :sample_chains,
      [ir, 4, [num_samples: 1000, num_warmup: 500, seed: seed]], 60_000)
  end)

IO.puts("#{length(chains)} chains completed in #{div(micros, 1000)}ms on #{target}")
IO.puts("Chains returned: #{length(chains)}")

# --- Cell 4: summarise ------------------------------------------------------------------------
fmt = fn x -> :erlang.float_to_binary(x, decimals: 3) end
mean = fn xs -> Enum.sum(xs) / length(xs) end

chains
|> Enum.with_index(1)
|> Enum.each(fn {chain, i} ->
  IO.puts(" Chain #{i}: mu=#{fmt.(mean.(chain["mu"]))}, sigma=#{fmt.(mean.(chain["sigma"]))}")
end)

all_mu = Enum.flat_map(chains, & &1["mu"])
all_sigma = Enum.flat_map(chains, & &1["sigma"])
n = length(all_mu)
mu_mean = mean.(all_mu)
mu_sd = :math.sqrt(Enum.sum(Enum.map(all_mu, fn x -> (x - mu_mean) * (x - mu_mean) end)) / (n - 1))

IO.puts("Pooled posterior (#{n} total samples across #{length(chains)} chains):")
IO.puts("mu: #{fmt.(mu_mean)} ± #{fmt.(mu_sd)}")
IO.puts("sigma: #{fmt.(mean.(all_sigma))}")
IO.puts("Computed on: #{target}")
IO.puts("Displayed on: #{Node.self()}")
IO.puts("Transport: erpc over Erlang distribution (loopback)")
