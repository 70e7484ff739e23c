# ---------------------------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------------------------

variable "prefix" {
  type        = string
  description = "Project prefix used in every resource name: 2-8 lowercase letters and digits, starting with a letter (validated by modules/naming)."
  default     = "somm"
}

variable "environment" {
  type        = string
  description = "Environment name, for example dev or prod: 2-6 lowercase letters and digits (validated by modules/naming)."
  default     = "dev"
}

variable "location" {
  type        = string
  description = "Azure region for every resource. It must offer the Flex Consumption plan with the chosen runtime (az functionapp list-flexconsumption-runtimes --location <region> --runtime custom)."
  default     = "swedencentral"
}

variable "tags" {
  type        = map(string)
  description = "Extra tags merged into the tags every resource gets (project, environment, managed-by)."
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Function app (Flex Consumption)
# ---------------------------------------------------------------------------------------------

variable "function_runtime_name" {
  type        = string
  description = "Flex Consumption runtime stack. `custom` runs the Rust custom handler directly; `python` or `node` also work with the same package (the host only spawns the executable) if `custom` is not offered in the region."
  default     = "custom"

  validation {
    condition     = contains(["custom", "python", "node"], var.function_runtime_name)
    error_message = "function_runtime_name must be custom, python or node."
  }
}

variable "function_runtime_version" {
  type        = string
  description = "Runtime version for function_runtime_name (`1.0` for custom; check with az functionapp list-flexconsumption-runtimes)."
  default     = "1.0"
}

variable "function_instance_memory_mb" {
  type        = number
  description = "Memory of each Flex Consumption instance in MB."
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.function_instance_memory_mb)
    error_message = "function_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "function_maximum_instance_count" {
  type        = number
  description = "Maximum number of instances the function app scales out to."
  default     = 40

  validation {
    condition     = var.function_maximum_instance_count >= 1 && var.function_maximum_instance_count <= 1000
    error_message = "function_maximum_instance_count must be between 1 and 1000."
  }
}

variable "http_always_ready_instances" {
  type        = number
  description = "Always-ready instances kept warm for the HTTP functions, which Flex Consumption scales as one group named `http` (0 = none, scale from zero; 1 or more removes cold starts of /api/predict at a cost)."
  default     = 0

  validation {
    condition     = var.http_always_ready_instances >= 0 && var.http_always_ready_instances <= 10
    error_message = "http_always_ready_instances must be between 0 and 10."
  }
}

variable "function_http_concurrency" {
  type        = number
  description = "HTTP requests one instance handles at once before the platform scales out; null keeps the platform default."
  default     = null

  validation {
    condition     = var.function_http_concurrency == null ? true : (var.function_http_concurrency >= 1 && var.function_http_concurrency <= 1000)
    error_message = "function_http_concurrency must be null or between 1 and 1000."
  }
}

variable "enable_blob_trigger_subscription" {
  type        = bool
  description = "Phase 2 of the deployment: create the Event Grid subscription that calls the blob trigger's webhook. Needs the deployed code (the blobs_extension system key exists only once the host has started with retrain-on-upload). Apply with false first, deploy the package, then apply with true."
  default     = false
}

# ---------------------------------------------------------------------------------------------
# Application settings (see local.settings.json.example)
# ---------------------------------------------------------------------------------------------

variable "retrain_schedule" {
  type        = string
  description = "NCRONTAB schedule (six fields, UTC) of the retrain-on-schedule function (SOMMELIER_RETRAIN_SCHEDULE)."
  default     = "0 0 3 * * *"

  validation {
    condition     = length(split(" ", trimspace(var.retrain_schedule))) == 6
    error_message = "retrain_schedule must be an NCRONTAB expression with six fields (second minute hour day month weekday)."
  }
}

variable "feedback_schedule" {
  type        = string
  description = "NCRONTAB schedule (six fields, UTC) of the join-feedback function (SOMMELIER_FEEDBACK_SCHEDULE)."
  default     = "0 0 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.feedback_schedule))) == 6
    error_message = "feedback_schedule must be an NCRONTAB expression with six fields (second minute hour day month weekday)."
  }
}

variable "prediction_log_sample" {
  type        = number
  description = "Share of prediction requests logged for feedback, 0 to 1 (SOMMELIER_PREDICTION_LOG_SAMPLE)."
  default     = 1

  validation {
    condition     = var.prediction_log_sample >= 0 && var.prediction_log_sample <= 1
    error_message = "prediction_log_sample must be in [0, 1]."
  }
}

variable "feedback_horizon_days" {
  type        = number
  description = "How far back the feedback join looks for predictions and labels, in days (SOMMELIER_FEEDBACK_HORIZON_DAYS)."
  default     = 30

  validation {
    condition     = var.feedback_horizon_days >= 1 && var.feedback_horizon_days <= 3650 && floor(var.feedback_horizon_days) == var.feedback_horizon_days
    error_message = "feedback_horizon_days must be a whole number from 1 to 3650."
  }
}

variable "prediction_log_retention_days" {
  type        = number
  description = "How long the prediction log's and the labels' blobs are kept, in days (SOMMELIER_PREDICTION_LOG_RETENTION_DAYS): each feedback join removes older ones, and a lifecycle rule of the storage account deletes them too. 0 keeps them all."
  default     = 90

  validation {
    condition     = floor(var.prediction_log_retention_days) == var.prediction_log_retention_days && (var.prediction_log_retention_days == 0 || (var.prediction_log_retention_days >= var.feedback_horizon_days && var.prediction_log_retention_days <= 3650))
    error_message = "prediction_log_retention_days must be 0 (keep every blob) or a whole number of days from feedback_horizon_days to 3650: the join still reads what is younger than its horizon."
  }
}

variable "train_on_feedback" {
  type        = bool
  description = "Whether trainings add the labelled production rows of the last feedback join (SOMMELIER_TRAIN_ON_FEEDBACK)."
  default     = true
}

variable "model_refresh_seconds" {
  type        = number
  description = "How often an instance checks the champion pointer for a new model (SOMMELIER_MODEL_REFRESH_SECONDS)."
  default     = 30

  validation {
    condition     = var.model_refresh_seconds >= 1
    error_message = "model_refresh_seconds must be at least 1."
  }
}

variable "promotion_tolerance" {
  type        = number
  description = "Relative RMSE slack for promoting a challenger (SOMMELIER_PROMOTION_TOLERANCE)."
  default     = 0.01

  validation {
    condition     = var.promotion_tolerance >= 0 && var.promotion_tolerance < 1
    error_message = "promotion_tolerance must be in [0, 1)."
  }
}

variable "max_label_shift" {
  type        = number
  description = "Population stability index of a new model's quality labels against the champion's above which it is stored but not promoted (SOMMELIER_MAX_LABEL_SHIFT)."
  default     = 0.25

  validation {
    condition     = var.max_label_shift > 0
    error_message = "max_label_shift must be above 0."
  }
}

variable "min_comparable_rows" {
  type        = number
  description = "Fewest rows unseen by both models for a fair champion/challenger comparison (SOMMELIER_MIN_COMPARABLE_ROWS)."
  default     = 30

  validation {
    condition     = var.min_comparable_rows >= 1 && floor(var.min_comparable_rows) == var.min_comparable_rows
    error_message = "min_comparable_rows must be a whole number, at least 1."
  }
}

variable "keep_versions" {
  type        = number
  description = "Model versions kept in the registry (SOMMELIER_KEEP_VERSIONS)."
  default     = 20

  validation {
    condition     = var.keep_versions >= 2
    error_message = "keep_versions must be at least 2 (champion and previous champion)."
  }
}

variable "max_batch_rows" {
  type        = number
  description = "Largest batch accepted by /api/predict and /api/invocations (SOMMELIER_MAX_BATCH_ROWS)."
  default     = 10000

  validation {
    condition     = var.max_batch_rows >= 1
    error_message = "max_batch_rows must be at least 1."
  }
}

variable "max_explain_rows" {
  type        = number
  description = "Most rows one /api/explain request explains; 413 past it (SOMMELIER_MAX_EXPLAIN_ROWS). An explained row costs what thousands of predictions cost."
  default     = 100

  validation {
    condition     = var.max_explain_rows >= 1 && var.max_explain_rows <= 10000 && floor(var.max_explain_rows) == var.max_explain_rows
    error_message = "max_explain_rows must be a whole number from 1 to 10000."
  }
}

variable "interval_coverage" {
  type        = number
  description = "Share of true qualities the prediction intervals contain (SOMMELIER_INTERVAL_COVERAGE)."
  default     = 0.9

  validation {
    condition     = var.interval_coverage >= 0.5 && var.interval_coverage <= 0.99
    error_message = "interval_coverage must be between 0.5 and 0.99."
  }
}

variable "push_stale_group_seconds" {
  type        = number
  description = "Seconds after which a running instance deletes the Pushgateway group of an instance that stopped pushing (SOMMELIER_PUSH_STALE_GROUP_SECONDS): instances the platform stops without a signal cannot delete their own. 0 never deletes; null leaves the app's default (an hour, or three push intervals if longer)."
  default     = null
  nullable    = true

  validation {
    condition     = var.push_stale_group_seconds == null ? true : (var.push_stale_group_seconds == 0 || var.push_stale_group_seconds >= 3 * var.push_interval_seconds)
    error_message = "push_stale_group_seconds must be null, 0 or at least three push intervals (3 × push_interval_seconds)."
  }
}

variable "push_interval_seconds" {
  type        = number
  description = "Seconds between metric pushes to the Pushgateway (SOMMELIER_PUSH_INTERVAL_SECONDS)."
  default     = 15

  validation {
    condition     = var.push_interval_seconds >= 1
    error_message = "push_interval_seconds must be at least 1."
  }
}

variable "log_format" {
  type        = string
  description = "Log format of the handler: text or json (SOMMELIER_LOG_FORMAT)."
  default     = "json"

  validation {
    condition     = contains(["text", "json"], var.log_format)
    error_message = "log_format must be text or json."
  }
}

variable "rust_log" {
  type        = string
  description = "Log filter of the handler, for example info or sommelier=debug (RUST_LOG)."
  default     = "info"
}

variable "mlflow_tracking_uri" {
  type        = string
  description = "MLflow tracking server URL (MLFLOW_TRACKING_URI). Empty: tracking off."
  default     = ""

  validation {
    condition     = var.mlflow_tracking_uri == "" || can(regex("^https?://", var.mlflow_tracking_uri))
    error_message = "mlflow_tracking_uri must be empty or an http(s) URL."
  }
}

variable "mlflow_experiment_name" {
  type        = string
  description = "MLflow experiment that receives the training runs (MLFLOW_EXPERIMENT_NAME)."
  default     = "sommelier"
}

variable "mlflow_model_name" {
  type        = string
  description = "Registered model name in the MLflow model registry (SOMMELIER_MLFLOW_MODEL_NAME)."
  default     = "sommelier-wine-quality"
}

variable "mlflow_tracking_username" {
  type        = string
  description = "Basic-auth user for MLflow (MLFLOW_TRACKING_USERNAME). Empty: none."
  default     = ""
}

variable "mlflow_tracking_password" {
  type        = string
  description = "Basic-auth password for MLflow. Stored in Key Vault and handed to the app as a Key Vault reference (MLFLOW_TRACKING_PASSWORD). Empty: none. Pass it through TF_VAR_mlflow_tracking_password, never in a file."
  default     = ""
  sensitive   = true
}

variable "mlflow_tracking_token" {
  type        = string
  description = "Bearer token for MLflow. Stored in Key Vault and handed to the app as a Key Vault reference (MLFLOW_TRACKING_TOKEN). Empty: none. Pass it through TF_VAR_mlflow_tracking_token, never in a file."
  default     = ""
  sensitive   = true
}

# ---------------------------------------------------------------------------------------------
# Monitoring VM (Prometheus, Pushgateway, Grafana; configured by Ansible)
# ---------------------------------------------------------------------------------------------

variable "admin_cidrs" {
  type        = list(string)
  description = "IPv4 CIDR ranges allowed to reach SSH (22) and Grafana over HTTPS (443) on the monitoring VM, for example [\"203.0.113.10/32\"]. Required; the internet as a whole (0.0.0.0/0 or any /0-/7) is rejected."

  validation {
    condition     = length(var.admin_cidrs) > 0
    error_message = "admin_cidrs must list at least one CIDR range."
  }

  validation {
    condition = alltrue([
      for c in var.admin_cidrs :
      can(regex("^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$", c)) && can(cidrhost(c, 0)) && try(tonumber(split("/", c)[1]) >= 8, false)
    ])
    error_message = "admin_cidrs must be IPv4 CIDR ranges with a prefix length of at least /8; 0.0.0.0/0 (the whole internet) is not allowed."
  }
}

variable "vm_size" {
  type        = string
  description = "Size of the monitoring VM (Prometheus, Pushgateway and Grafana fit in 2 vCPUs / 4 GiB)."
  default     = "Standard_B2s"
}

variable "vm_admin_username" {
  type        = string
  description = "Admin user of the monitoring VM (used by Ansible)."
  default     = "azureadmin"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.vm_admin_username)) && !contains(["root", "admin", "administrator"], var.vm_admin_username)
    error_message = "vm_admin_username must be a valid Linux user name and not root, admin or administrator."
  }
}

variable "vm_admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key (the .pub file content) for the monitoring VM's admin user. Password login is disabled."

  validation {
    condition     = can(regex("^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.vm_admin_ssh_public_key))
    error_message = "vm_admin_ssh_public_key must be an OpenSSH public key (ssh-rsa, ssh-ed25519 or ecdsa-sha2-*)."
  }
}

variable "vm_os_disk_size_gb" {
  type        = number
  description = "OS disk size of the monitoring VM in GiB (Prometheus keeps its TSDB there)."
  default     = 32

  validation {
    condition     = var.vm_os_disk_size_gb >= 30
    error_message = "vm_os_disk_size_gb must be at least 30 (the Ubuntu image size)."
  }
}

variable "grafana_acme_email" {
  type        = string
  description = "Contact address for a publicly trusted Grafana certificate (ACME HTTP-01 on the VM's DNS name). Empty (default): Caddy serves Grafana with a certificate from its own internal CA, and port 80 stays closed. Set: port 80 is opened to the internet for the ACME challenge only (Caddy redirects everything else to HTTPS, which stays limited to admin_cidrs); if issuance fails, the internal certificate is the fallback."
  default     = ""

  validation {
    condition     = var.grafana_acme_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.grafana_acme_email))
    error_message = "grafana_acme_email must be empty or an e-mail address."
  }
}

variable "vnet_address_space" {
  type        = string
  description = "Address space of the virtual network shared by the function app's integration subnet and the monitoring subnet (a /24 or larger)."
  default     = "10.42.0.0/24"

  validation {
    condition     = can(cidrhost(var.vnet_address_space, 0)) && try(tonumber(split("/", var.vnet_address_space)[1]) <= 24, false)
    error_message = "vnet_address_space must be a CIDR range of /24 or larger (it holds a /26 integration subnet and a /27 monitoring subnet)."
  }
}

variable "pushgateway_username" {
  type        = string
  description = "Basic-auth user of the Pushgateway (SOMMELIER_PUSHGATEWAY_USERNAME); the password is generated."
  default     = "sommelier"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{3,32}$", var.pushgateway_username))
    error_message = "pushgateway_username must be 3-32 characters of letters, digits, dot, underscore or hyphen."
  }
}

variable "prometheus_retention_time" {
  type        = string
  description = "How long Prometheus keeps samples (handed to Ansible as prometheus_retention_time), for example 15d."
  default     = "15d"

  validation {
    condition     = can(regex("^[0-9]+(h|d|w|y)$", var.prometheus_retention_time))
    error_message = "prometheus_retention_time must be a Prometheus duration such as 15d."
  }
}

# ---------------------------------------------------------------------------------------------
# Observability and storage
# ---------------------------------------------------------------------------------------------

variable "log_retention_days" {
  type        = number
  description = "Retention of the Log Analytics workspace behind Application Insights, in days."
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

variable "storage_replication_type" {
  type        = string
  description = "Replication of the storage account (models and training data)."
  default     = "GRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage_replication_type)
    error_message = "storage_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "blob_soft_delete_days" {
  type        = number
  description = "Days deleted blobs and containers are kept (soft delete)."
  default     = 14

  validation {
    condition     = var.blob_soft_delete_days >= 1 && var.blob_soft_delete_days <= 365
    error_message = "blob_soft_delete_days must be between 1 and 365."
  }
}

# ---------------------------------------------------------------------------------------------
# Alerting: Azure Monitor's action group and the monitoring VM's Alertmanager (alerts.tf)
# ---------------------------------------------------------------------------------------------

variable "alert_email_addresses" {
  type        = list(string)
  description = "Who receives the alerts by e-mail, from both planes: Azure Monitor's action group and the VM's Alertmanager. Stored in Key Vault and handed to Ansible. Empty: no e-mail receiver. Pass it through TF_VAR_alert_email_addresses."
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for a in var.alert_email_addresses : can(regex("^[^@\\s,]+@[^@\\s,]+\\.[^@\\s,]+$", a))])
    error_message = "alert_email_addresses must be e-mail addresses."
  }
}

variable "alert_webhook_url" {
  type        = string
  description = "Webhook of Azure Monitor's action group (common alert schema), for example a Logic App or Teams workflow that renders it. Empty: none. Pass it through TF_VAR_alert_webhook_url."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.alert_webhook_url == "" || can(regex("^https://\\S+$", var.alert_webhook_url))
    error_message = "alert_webhook_url must be empty or an https URL."
  }
}

variable "alertmanager_smtp_smarthost" {
  type        = string
  description = "HOST:PORT of the authenticated SMTP relay the VM's Alertmanager sends e-mail through: port 587 with STARTTLS (Azure blocks outbound port 25). Needed when alert_email_addresses is set."
  default     = ""

  validation {
    condition     = var.alertmanager_smtp_smarthost == "" || (can(regex("^[^:\\s]+:[0-9]+$", var.alertmanager_smtp_smarthost)) && !endswith(var.alertmanager_smtp_smarthost, ":25"))
    error_message = "alertmanager_smtp_smarthost must be HOST:PORT, and not port 25 (blocked from Azure): use the relay's submission port, 587."
  }
}

variable "alertmanager_smtp_from" {
  type        = string
  description = "Sender address of the Alertmanager's e-mails (one the relay accepts)."
  default     = ""

  validation {
    condition     = var.alertmanager_smtp_from == "" || can(regex("^[^@\\s]+@[^@\\s]+$", var.alertmanager_smtp_from))
    error_message = "alertmanager_smtp_from must be empty or an e-mail address."
  }
}

variable "alertmanager_smtp_username" {
  type        = string
  description = "User name at the SMTP relay. Empty: no authentication."
  default     = ""
}

variable "alertmanager_smtp_password" {
  type        = string
  description = "Password at the SMTP relay. Stored in Key Vault and handed to Ansible, which writes it to a file only the service reads. Pass it through TF_VAR_alertmanager_smtp_password."
  default     = ""
  sensitive   = true
}

variable "alertmanager_slack_webhook_url" {
  type        = string
  description = "Slack incoming webhook the VM's Alertmanager posts to. Stored in Key Vault and handed to Ansible. Empty: none."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.alertmanager_slack_webhook_url == "" || can(regex("^https://\\S+$", var.alertmanager_slack_webhook_url))
    error_message = "alertmanager_slack_webhook_url must be empty or an https URL."
  }
}

variable "alertmanager_webhook_url" {
  type        = string
  description = "Generic webhook the VM's Alertmanager posts its own JSON to (for example a Teams workflow). Stored in Key Vault and handed to Ansible. Empty: none."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.alertmanager_webhook_url == "" || can(regex("^https://\\S+$", var.alertmanager_webhook_url))
    error_message = "alertmanager_webhook_url must be empty or an https URL."
  }
}

variable "alertmanager_heartbeat_url" {
  type        = string
  description = "Dead man's switch (any heartbeat service) the always-firing Watchdog alert is sent to every minute; set its grace period above a minute plus the repeat interval, e.g. 5 minutes. Stored in Key Vault and handed to Ansible. Empty: silence goes unnoticed."
  default     = ""
  sensitive   = true

  validation {
    condition     = var.alertmanager_heartbeat_url == "" || can(regex("^https://\\S+$", var.alertmanager_heartbeat_url))
    error_message = "alertmanager_heartbeat_url must be empty or an https URL."
  }
}

variable "runbook_base_url" {
  type        = string
  description = "Where monitoring/README.md is published (for example its page in the repository): every Alertmanager notification links to <this>#<alert name in lower case>. Empty: notifications carry the runbook text without a link."
  default     = ""

  validation {
    condition     = var.runbook_base_url == "" || can(regex("^https?://\\S+$", var.runbook_base_url))
    error_message = "runbook_base_url must be empty or an http(s) URL."
  }
}

variable "availability_test_locations" {
  type        = list(string)
  description = "Application Insights test locations that call GET /api/health (each run is billed)."
  default     = ["emea-nl-ams-azr", "emea-gb-db3-azr", "emea-fr-pra-edge", "emea-ru-msa-edge", "us-va-ash-azr"]

  validation {
    condition     = length(var.availability_test_locations) >= 1 && length(var.availability_test_locations) <= 16
    error_message = "availability_test_locations must list 1 to 16 locations."
  }
}

variable "availability_test_frequency" {
  type        = number
  description = "Seconds between two runs of the availability test at each location: 300, 600 or 900."
  default     = 300

  validation {
    condition     = contains([300, 600, 900], var.availability_test_frequency)
    error_message = "availability_test_frequency must be 300, 600 or 900."
  }
}

variable "availability_failed_locations" {
  type        = number
  description = "Locations that must fail at once before the availability alert fires (one failing location is usually that location's network)."
  default     = 2

  validation {
    condition     = var.availability_failed_locations >= 1
    error_message = "availability_failed_locations must be at least 1."
  }
}

variable "http_5xx_threshold" {
  type        = number
  description = "Server errors (Http5xx) in 5 minutes above which Azure Monitor alerts."
  default     = 5

  validation {
    condition     = var.http_5xx_threshold >= 0
    error_message = "http_5xx_threshold must not be negative."
  }
}

variable "failed_requests_threshold" {
  type        = number
  description = "Failed requests in Application Insights over 15 minutes above which Azure Monitor alerts."
  default     = 10

  validation {
    condition     = var.failed_requests_threshold >= 0
    error_message = "failed_requests_threshold must not be negative."
  }
}

variable "push_failures_threshold" {
  type        = number
  description = "Failed or refused pushes to the Pushgateway logged over 15 minutes above which Azure Monitor alerts (an instance pushes 60 times in 15 minutes at the default interval)."
  default     = 20

  validation {
    condition     = var.push_failures_threshold >= 0
    error_message = "push_failures_threshold must not be negative."
  }
}
