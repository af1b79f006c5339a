DROP TABLE api_flows;
