"""wxeval: score weather forecasts against ERA5 the WeatherBench 2 way, in one lazy pass."""

__version__ = "0.1.0"
